"""Private messages in the page, in headless Chromium at phone size, against real daemons.

The phone's seed is set in its localStorage before the page loads, so Python knows its
keys; the other people are feeds written in Python into a box's data dir before it starts
(or posted to its API while it runs). Messages cross both ways: written with the Python
API and read in the page, written in the page and opened in Python.
"""

from __future__ import annotations

import base64
import random
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.codec.content import (
    About,
    ContactAction,
    decode_private_inner,
    encode_about,
    recipient_tag,
)
from meshnode.codec.message import ContentType
from meshnode.core.node import Node
from meshnode.host.datadir import load_identity, load_network_key, store_path
from meshnode.secure.identity import Identity, format_feed_id
from meshnode.secure.private import enc_keypair, open_private
from meshnode.store.flatfile import FileStore, StoreConfig
from tests.daemons import DaemonPool, daemon_pool, wait_for
from tests.web.test_accessibility_browser import AUDIT
from tests.web.test_inbox_api import Writer
from tests.web.test_page_browser import WAIT_S, _click, _count, _fill, _text, page_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from selenium.webdriver.chrome.webdriver import WebDriver

    from tests.daemons import Daemon

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PHONE = Identity(bytes(range(32)))  # the phone's seed, put in its localStorage
PHONE_ID = format_feed_id(PHONE.feed_id)
HELLO = "hello phone, from python <img src=x onerror=\"document.title='pwned'\">"
PIA, QUINN, RAE = Identity(bytes([21]) * 32), Identity(bytes([22]) * 32), Identity(bytes([23]) * 32)


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def new_box(pool: DaemonPool, name: str) -> tuple[Path, Identity]:
    """A new data dir and its box's identity."""
    data, _ = pool.init(name)
    return data, load_identity(data)


def person(who: Identity, name: str, *, homes: tuple[Identity, ...]) -> Writer:
    """A feed with a name and a published key whose homes are ``homes``."""
    writer = Writer(who)
    writer.entry(ContentType.ABOUT, encode_about(About(name=name, description="")))
    writer.key(homes=homes)
    return writer


def fill_box(data: Path, *writers: Writer) -> Identity:
    """Store the writers' entries in the (stopped) box at ``data``, which follows them."""
    me = load_identity(data)
    store = FileStore(store_path(data), StoreConfig(fsync="never"))
    node = Node(me, network_key=load_network_key(data), store=store, rng=random.Random(1))
    try:
        for writer in writers:
            node.set_contact(ContactAction.FOLLOW, writer.who.feed_id, timestamp_ms=1)
            for entry in writer.made:
                node.ingest(entry.raw)
    finally:
        node.close()
    return me


def open_phone(browser: WebDriver, daemon: Daemon) -> None:
    """The page at ``daemon``'s box with the phone's seed, connected."""
    browser.get(page_url(daemon))
    browser.execute_script(
        "localStorage.clear(); localStorage.setItem('meshnode.seed', arguments[0])",
        PHONE.seed.hex(),
    )
    browser.refresh()
    wait_for("the box", lambda: "Connected" in _text(browser, "box-status") or None, WAIT_S)
    assert _text(browser, "me-id") == PHONE_ID


def start_phone(pool: DaemonPool, browser: WebDriver, data: Path, *writers: Writer) -> Daemon:
    """The box at ``data`` keeping the writers' feeds, running, and the phone on its page."""
    fill_box(data, *writers)
    daemon = pool.start(data.name)
    open_phone(browser, daemon)
    return daemon


def open_inbox(browser: WebDriver) -> None:
    _click(browser, "#inbox-link")
    wait_for("the inbox to read", lambda: _inbox_read(browser) or None, WAIT_S)


def _inbox_read(browser: WebDriver) -> bool:
    return bool(browser.execute_script("return (window.meshnodeInbox || {}).readMs > 0"))


def _texts(browser: WebDriver, selector: str) -> list[str]:
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
    return [str(t) for t in browser.execute_script(script, selector)]


def phone_privates(pool: DaemonPool, data: Path) -> list[dict[str, Any]]:
    return [e for e in pool.feed(data, PHONE_ID) if e["type"] == "private"]


def opened_by(who: Identity, entry: dict[str, Any]) -> tuple[str, set[bytes]]:
    """The text and recipient tags of a private entry, opened with ``who``'s key."""
    inner, _ = open_private(
        base64.b64decode(entry["content_b64"]), enc_keypair(who.seed).secret_key
    )
    decoded = decode_private_inner(inner)
    return decoded.payload.decode(), set(decoded.recipient_tags)


def test_messages_cross_between_python_and_the_page_both_ways(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, box = new_box(pool, "a")
    pia = person(PIA, "Pia", homes=(box,))
    quinn = person(QUINN, "Quinn", homes=(box,))
    pia.private(HELLO, PHONE)
    quinn.private("not for the phone", PIA)
    daemon = start_phone(pool, browser, a, pia, quinn)
    # The timeline says a private message exists, and nothing of what it says.
    wait_for(
        "the timeline",
        lambda: "a private message" in _texts(browser, "#timeline .text") or None,
        WAIT_S,
    )
    assert "from python" not in str(browser.execute_script("return document.body.textContent"))
    assert pool.feed(a, PHONE_ID) == []  # a phone that never opened its inbox publishes nothing
    for scheme in ("light", "dark"):
        _audit(browser, scheme, "the page with its inbox link")
    open_inbox(browser)

    # The phone published its key, with this box as its home.
    held = pool.feed(a, PHONE_ID)
    assert [e["type"] for e in held] == ["enckey"]
    # Only the message for the phone is shown: one conversation, with Pia.
    wait_for("Pia's conversation", lambda: _count(browser, "#conversations li") or None, WAIT_S)
    assert _texts(browser, "#conversations .who") == ["Pia"]
    _click(browser, "#conversations a")
    wait_for("the message", lambda: _count(browser, "#dm-list li") or None, WAIT_S)
    assert _texts(browser, "#dm-list .text") == [HELLO]  # as text: no element made of it
    assert _count(browser, "#dm-list img") == 0
    assert browser.execute_script("return document.title") != "pwned"
    assert _text(browser, "dm-title") == "With Pia"

    # To two people: Python opens it with each of their keys.
    _click(browser, "#dm .back")
    for who in (PIA, QUINN):
        _choose(browser, who)
    _fill(browser, "dm-text", "hi both, from the page")
    _click(browser, "#dm-send")
    wait_for("the message on the box", lambda: phone_privates(pool, a) or None, WAIT_S)
    sent = phone_privates(pool, a)[-1]
    tags = {recipient_tag(PIA.feed_id), recipient_tag(QUINN.feed_id)}
    assert opened_by(PIA, sent) == ("hi both, from the page", tags)
    assert opened_by(QUINN, sent) == ("hi both, from the page", tags)
    with pytest.raises(ValueError, match="not addressed"):
        opened_by(RAE, sent)
    # The page shows the new conversation; both recipients' home is this box: reached.
    wait_for("the conversation", lambda: "Pia, Quinn" in _text(browser, "dm-title") or None, WAIT_S)
    wait_for("the sent message", lambda: _count(browser, "#dm-list .delivery") or None, WAIT_S)
    assert _texts(browser, "#dm-list .delivery") == ["At Pia's box. At Quinn's box."]
    # A reply from Python, posted to the running box, comes in live.
    answer = pia.private("got it", PHONE, QUINN)
    _post_entry(daemon, answer.raw)
    wait_for("Pia's answer", lambda: "got it" in _texts(browser, "#dm-list .text") or None, WAIT_S)
    for scheme in ("light", "dark"):
        _audit(browser, scheme, "a conversation")
    _click(browser, "#dm .back")
    wait_for("two conversations", lambda: _count(browser, "#conversations li") == 2 or None, WAIT_S)
    for scheme in ("light", "dark"):
        _audit(browser, scheme, "the inbox")


def _choose(browser: WebDriver, who: Identity) -> None:
    """Tick ``who`` among the recipients, once the page lists them."""
    selector = f"#dm-people input[value='{format_feed_id(who.feed_id)}']"
    wait_for("a recipient", lambda: _count(browser, selector) or None, WAIT_S)
    _click(browser, selector)


def _audit(browser: WebDriver, scheme: str, where: str) -> None:
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    try:
        assert browser.execute_script(AUDIT) == [], f"{where}, {scheme}"
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def _offline(browser: WebDriver, offline: bool) -> None:
    """Cut the page off from every server (Chromium's own network emulation), or not."""
    browser.execute_cdp_cmd("Network.enable", {})
    conditions = {
        "offline": offline,
        "latency": 0,
        "downloadThroughput": -1,
        "uploadThroughput": -1,
    }
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)


def _post_entry(daemon: Daemon, raw: bytes) -> None:
    url = page_url(daemon).replace("village.test", "127.0.0.1") + "api/entries"
    request = urllib.request.Request(
        url, data=raw, headers={"Content-Type": "application/octet-stream"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def test_a_changed_key_is_warned_about_and_blocks_sending_until_accepted(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, box = new_box(pool, "a")
    pia = person(PIA, "Pia", homes=(box,))
    pia.private("my first key", PHONE)
    daemon = start_phone(pool, browser, a, pia)
    open_inbox(browser)
    wait_for("Pia's conversation", lambda: _count(browser, "#conversations a") or None, WAIT_S)
    _click(browser, "#conversations a")  # the first use: Pia's key is pinned
    wait_for("the message", lambda: _count(browser, "#dm-list li") or None, WAIT_S)
    assert _count(browser, "#dm-warnings .warning") == 0

    # Pia resets her key (a new generation): the conversation says so.
    _post_entry(daemon, pia.key(1, homes=(box,)).raw)
    wait_for("the warning", lambda: _count(browser, "#dm-warnings .warning") or None, WAIT_S)
    warning = _text(browser, "dm-warnings")
    assert "Pia's key for private messages has changed" in warning
    _fill(browser, "dm-answer-text", "are you still you?")
    _click(browser, "#dm-answer-send")
    wait_for(
        "the refusal", lambda: "Not sent" in _text(browser, "dm-answer-status") or None, WAIT_S
    )
    assert phone_privates(pool, a) == []
    # Accepted: the warning goes and the next message is sealed to the new key.
    _click(browser, "#dm-warnings .accept-key")
    assert _count(browser, "#dm-warnings .warning") == 0
    _click(browser, "#dm-answer-send")
    wait_for("the message on the box", lambda: phone_privates(pool, a) or None, WAIT_S)
    sent = phone_privates(pool, a)[-1]
    payload = base64.b64decode(sent["content_b64"])
    inner, _ = open_private(payload, enc_keypair(PIA.seed, 1).secret_key)
    assert decode_private_inner(inner).payload == b"are you still you?"
    with pytest.raises(ValueError, match="not addressed"):
        open_private(payload, enc_keypair(PIA.seed, 0).secret_key)
    # The pin survives a reload: no warning for the key accepted.
    browser.refresh()
    wait_for("the box", lambda: "Connected" in _text(browser, "box-status") or None, WAIT_S)
    wait_for("the messages", lambda: _count(browser, "#dm-list li") == 2 or None, WAIT_S)
    assert _count(browser, "#dm-warnings .warning") == 0


def test_the_delivery_status_changes_when_the_recipients_home_box_holds_the_message(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, _ = new_box(pool, "a")
    b, home = new_box(pool, "b")
    pool.ok(b, "follow", PHONE_ID)  # Rae's home box keeps the phone's feed once it meets A
    daemon_a = start_phone(pool, browser, a, person(RAE, "Rae", homes=(home,)))
    open_inbox(browser)
    _choose(browser, RAE)
    # Written while the box is out of reach: it waits on the phone, then goes by itself.
    _offline(browser, True)
    try:
        _fill(browser, "dm-text", "see you at the well")
        _click(browser, "#dm-send")
        wait_for(
            "the waiting message", lambda: _count(browser, "#dm-list .delivery") or None, WAIT_S
        )
        assert _texts(browser, "#dm-list .delivery") == ["Waiting on this phone for the box."]
        assert phone_privates(pool, a) == []
    finally:
        _offline(browser, False)
    wait_for(
        "the message on the box",
        lambda: (
            _texts(browser, "#dm-list .delivery") == ["On this box, not yet at Rae's box."] or None
        ),
        WAIT_S,
    )
    assert [e["seq"] for e in phone_privates(pool, a)] == [2]
    pool.start("b", "--peer", daemon_a.address)
    wait_for(
        "the message at Rae's box",
        lambda: _texts(browser, "#dm-list .delivery") == ["At Rae's box."] or None,
        WAIT_S,
    )
    assert [e["seq"] for e in phone_privates(pool, b)] == [2]  # after the phone's key

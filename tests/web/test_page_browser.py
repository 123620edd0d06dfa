"""The village page in headless Chromium at phone size, served by a real `meshnode run`.

The page is loaded from ``village.test`` (the browser alone resolves it to 127.0.0.1), so,
as on a phone at a LAN address, it is not a secure context and has no WebCrypto.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemons import DaemonPool, daemon_pool, wait_for
from tests.web.conftest import LAN_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.chrome.webdriver import WebDriver

    from tests.daemons import Daemon

pytestmark = [pytest.mark.slow, pytest.mark.integration]

_PAGE = re.compile(r"page on http://127\.0\.0\.1:(\d+)/")
WAIT_S = 20.0


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def page_url(daemon: Daemon) -> str:
    port = wait_for("the page to listen", lambda: _port(daemon.stderr()), 10.0)
    return f"http://{LAN_NAME}:{port}/"


def _port(log: str) -> str | None:
    match = _PAGE.search(log)
    return match.group(1) if match else None


def _text(browser: WebDriver, element_id: str) -> str:
    value = browser.execute_script(f"return document.getElementById({element_id!r}).textContent")
    return str(value)


def _timeline(browser: WebDriver) -> list[str]:
    script = "return [...document.querySelectorAll('#timeline .text')].map(e => e.textContent)"
    texts = browser.execute_script(script)
    return [str(t) for t in texts]


def _post(browser: WebDriver, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "send").click()


def test_a_phone_makes_its_key_posts_and_the_box_and_its_peer_keep_the_post(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    daemon_a = pool.start("a")
    pool.start("b", "--peer", daemon_a.address)
    pool.ok(b, "follow", a_id)
    b_id = pool.json(b, "whoami")["id"]
    pool.ok(a, "follow", str(b_id))  # so the box keeps B's feed and lists B among its people
    browser.delete_all_cookies()
    browser.get(page_url(daemon_a))
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    wait_for(
        "the page to reach the box",
        lambda: "Connected" in _text(browser, "box-status") or None,
        WAIT_S,
    )
    assert browser.execute_script("return window.isSecureContext") is False
    assert browser.execute_script("return Boolean(window.crypto && window.crypto.subtle)") is False
    phone_id = _text(browser, "me-id")
    assert phone_id.startswith("@")
    assert phone_id.endswith(".ed25519")
    assert "fits one radio frame" in _text(browser, "counter")

    _post(browser, "hello from my phone <script>alert(1)</script>")
    wait_for(
        "the post on the page",
        lambda: any("hello from my phone" in t for t in _timeline(browser)) or None,
        WAIT_S,
    )
    assert (
        browser.execute_script("return document.querySelectorAll('#timeline script').length") == 0
    )
    held = pool.feed(a, phone_id)
    assert [e["text"] for e in held] == ["hello from my phone <script>alert(1)</script>"]
    wait_for("the box's peer to hold it", lambda: pool.feed(b, phone_id) or None, WAIT_S)

    # A reload keeps the identity, and the next post continues the same feed.
    browser.refresh()
    wait_for("the page again", lambda: "Connected" in _text(browser, "box-status") or None, WAIT_S)
    assert _text(browser, "me-id") == phone_id
    _post(browser, "second post")
    wait_for("the second post on the box", lambda: len(pool.feed(a, phone_id)) == 2 or None, WAIT_S)
    assert [e["seq"] for e in pool.feed(a, phone_id)] == [1, 2]

    # A name, then following someone the box keeps: both are entries of the phone's feed.
    _fill(browser, "name", "Amina")
    _click(browser, "#about button[type=submit]")
    wait_for("the name on the box", lambda: len(pool.feed(a, phone_id)) == 3 or None, WAIT_S)
    assert pool.feed(a, phone_id)[-1]["about"] == {"name": "Amina", "description": ""}
    follow = "#people button[aria-label^='Follow']"
    wait_for("someone to follow", lambda: _count(browser, follow) or None, WAIT_S)
    _click(browser, follow)
    wait_for("the follow on the box", lambda: len(pool.feed(a, phone_id)) == 4 or None, WAIT_S)
    assert pool.feed(a, phone_id)[-1]["contact"] == {"action": "follow", "target": b_id}


def _fill(browser: WebDriver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def _click(browser: WebDriver, selector: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, selector).click()


def _count(browser: WebDriver, selector: str) -> int:
    return int(browser.execute_script(f"return document.querySelectorAll({selector!r}).length"))


HOSTILE = [
    "<img src=x onerror=\"document.title='pwned'\">",
    "\u202eevil right-to-left override\u202c done",
    "a" + "\u0301" * 4000,  # 8 KB of combining accents on one letter
    "\x1b[31mterminal escape\x1b[0m and a NUL-free control \x07",
    "x" * 2000,  # one unbroken word
]


def test_hostile_text_is_shown_as_text_and_keeps_the_layout(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, _ = pool.init("a")
    for text in HOSTILE:
        pool.ok(a, "post", text)
    daemon = pool.start("a")
    browser.get(page_url(daemon))
    wait_for("the timeline", lambda: len(_timeline(browser)) >= len(HOSTILE) or None, WAIT_S)
    shown = _timeline(browser)
    for text in HOSTILE:
        assert text in shown
    assert browser.execute_script("return document.title") != "pwned"
    assert _count(browser, "#timeline img") == 0
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= browser.execute_script("return window.innerWidth")


# BIP-39's reference vectors for 256-bit entropy (its test vectors, without passphrase).
BIP39 = {
    "00": "abandon " * 23 + "art",
    "7f": "legal winner thank year wave sausage worth useful " * 2
    + "legal winner thank year wave sausage worth title",
    "80": "letter advice cage absurd amount doctor acoustic avoid " * 2
    + "letter advice cage absurd amount doctor acoustic bless",
    "ff": "zoo " * 23 + "vote",
}


def _backup_module(browser: WebDriver, code: str) -> Any:
    script = (
        "const done = arguments[arguments.length - 1];"
        "import('/static/backup.js').then((m) => done((" + code + ")(m)))"
        ".catch((e) => done('error ' + e.message));"
    )
    return browser.execute_async_script(script)


def test_a_key_backs_up_as_words_and_comes_back_on_a_fresh_browser(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, _ = pool.init("a")
    daemon = pool.start("a")
    browser.get(page_url(daemon))
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    wait_for(
        "the page to reach the box",
        lambda: "Connected" in _text(browser, "box-status") or None,
        WAIT_S,
    )
    made = _backup_module(
        browser,
        "(m) => " + json.dumps(list(BIP39)) + ".map((b) => m.seedToWords("
        "new Uint8Array(32).fill(parseInt(b, 16))).join(' '))",
    )
    assert made == list(BIP39.values())
    swapped = _backup_module(
        browser,
        "(m) => { try { m.wordsToSeed('"
        + BIP39["7f"].replace("legal winner", "winner legal", 1)
        + "'); return 'accepted'; } catch (e) { return e.message; } }",
    )
    assert "do not check out" in swapped

    phone_id = _text(browser, "me-id")
    _post(browser, "before the phone was lost")
    wait_for("the first post on the box", lambda: pool.feed(a, phone_id) or None, WAIT_S)
    assert _text(browser, "me-note")  # the reminder shows until the backup is opened once
    _click(browser, "#backup summary")
    wait_for("the words", lambda: _count(browser, "#backup-words li") == 24 or None, WAIT_S)
    words = " ".join(
        str(w)
        for w in browser.execute_script(
            "return [...document.querySelectorAll('#backup-words li')].map(e => e.textContent)"
        )
    )
    assert browser.execute_script("return document.getElementById('backup-qr').src").startswith(
        "data:image/gif;base64,"
    )
    assert browser.execute_script("return document.getElementById('me-note').hidden") is True

    # A fresh browser: a new key is made; restoring the words brings the old one back.
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    wait_for("a fresh key", lambda: _text(browser, "me-id") != phone_id or None, WAIT_S)
    _click(browser, "#restore summary")
    _fill(browser, "restore-words", words)
    _click(browser, "#restore-form button")
    wait_for("the restored key", lambda: _text(browser, "me-id") == phone_id or None, WAIT_S)
    wait_for("the page again", lambda: "Connected" in _text(browser, "box-status") or None, WAIT_S)
    _post(browser, "after restoring the backup")
    wait_for("the second post on the box", lambda: len(pool.feed(a, phone_id)) == 2 or None, WAIT_S)
    held = pool.feed(a, phone_id)
    assert [e["seq"] for e in held] == [1, 2]  # continued the feed: no fork
    assert pool.json(a, "status")["forked"] == []  # the box took seq 2 as the next entry


def _wait_connected(browser: WebDriver) -> None:
    wait_for(
        "the page to reach the box",
        lambda: "Connected" in _text(browser, "box-status") or None,
        WAIT_S,
    )


def test_a_reply_from_the_page_names_its_parent(browser: WebDriver, pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    pool.ok(a, "post", "who has a ladder?")
    parent = pool.feed(a)[-1]
    daemon = pool.start("a")
    browser.get(page_url(daemon))
    _wait_connected(browser)
    wait_for("the post", lambda: _count(browser, "#timeline .reply") or None, WAIT_S)
    _click(browser, "#timeline .reply")
    assert "who has a ladder?" in _text(browser, "replying-to")
    phone_id = _text(browser, "me-id")
    _post(browser, "I do, come by")
    wait_for("the reply on the box", lambda: pool.feed(a, phone_id) or None, WAIT_S)
    reply = pool.feed(a, phone_id)[-1]
    assert (reply["type"], reply["text"], reply["parent"]) == (
        "reply",
        "I do, come by",
        parent["id"],
    )
    wait_for(
        "the reply shown under its parent",
        lambda: any("who has a ladder?" in t for t in _metas(browser)) or None,
        WAIT_S,
    )
    # The post now counts its reply; its thread holds both, the question first.
    wait_for("the reply count", lambda: "1 reply" in _text(browser, "timeline") or None, WAIT_S)
    _click(browser, "#timeline a.thread")
    wait_for("the thread", lambda: _count(browser, "#view-list li") == 2 or None, WAIT_S)
    assert _view(browser) == ["who has a ladder?", "I do, come by"]
    assert _count(browser, "section:not([hidden]) #timeline") == 0  # the thread stands alone
    # The box's name leads to its page: its own entries, newest first.
    pool.ok(a, "about", "--name", "Mill box", "--description", "by the river")
    _click(browser, "#view-list .meta a")
    wait_for(
        "the box's page", lambda: "by the river" in _text(browser, "view-about") or None, WAIT_S
    )
    assert _text(browser, "view-title") == "Mill box"
    assert _view(browser)[-1] == "who has a ladder?"
    _click(browser, "#view-back")
    wait_for(
        "everything again", lambda: _count(browser, "#view:not([hidden])") == 0 or None, WAIT_S
    )
    assert "I do, come by" in _timeline(browser)


def _view(browser: WebDriver) -> list[str]:
    script = "return [...document.querySelectorAll('#view-list .text')].map(e => e.textContent)"
    return [str(t) for t in browser.execute_script(script)]


def _metas(browser: WebDriver) -> list[str]:
    script = "return [...document.querySelectorAll('#timeline .meta')].map(e => e.textContent)"
    return [str(t) for t in browser.execute_script(script)]


def test_the_operator_logs_in_on_the_page_and_hides_a_feed(
    browser: WebDriver, pool: DaemonPool
) -> None:
    a, _ = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(b, "about", "--name", "Spammer")
    pool.ok(a, "follow", b_id)
    done = pool.cli(a, "web", "passphrase", stdin="a long operator passphrase\n")
    assert done.returncode == 0, done.stderr
    daemon_b = pool.start("b")
    daemon_a = pool.start("a", "--peer", daemon_b.address)
    wait_for("A to hold B's name", lambda: pool.feed(a, b_id) or None, WAIT_S)
    stick = a.parent / "stick"
    stick.mkdir()
    pool.ok(a, "usb", "init", str(stick))
    pool.ok(a, "usb", "sync", str(stick))  # through the daemon
    browser.get(page_url(daemon_a))
    _wait_connected(browser)
    _click(browser, "#operator summary")
    _fill(browser, "passphrase", "not the passphrase")
    _click(browser, "#operator-login button")
    wait_for("the refusal", lambda: "Wrong" in _text(browser, "operator-status") or None, WAIT_S)
    _fill(browser, "passphrase", "a long operator passphrase")
    _click(browser, "#operator-login button")
    wait_for(
        "the status", lambda: "entries of" in _text(browser, "operator-status") or None, WAIT_S
    )
    # The operator sees the box as the daemon does: its peer, its disk, the drive synced.
    assert "Spammer · tcp · connected" in _text(browser, "operator-peers")
    disk = _text(browser, "operator-disk")
    assert re.fullmatch(r"Disk: [\d.,]+ [KMGT]?B free of [\d.,]+ [KMGT]?B\.", disk), disk
    assert str(stick) in _text(browser, "operator-usb")
    assert "No radios." in _text(browser, "operator-radios")
    hide = "#people button[aria-label^='Hide from this box Spammer']"
    wait_for("a hide button", lambda: _count(browser, hide) or None, WAIT_S)
    _click(browser, hide)
    wait_for(
        "the hide in the log",
        lambda: "Spammer hidden" in _text(browser, "operator-log") or None,
        WAIT_S,
    )
    own = pool.feed(a)
    assert own[-1]["contact"] == {"action": "block", "target": b_id}
    wait_for("Spammer gone from the people", lambda: _count(browser, hide) == 0 or None, WAIT_S)
    # The poster: its link shows after the login and opens with the session, under the CSP.
    assert _count(browser, "#poster-link:not([hidden])") == 1
    assert _text(browser, "poster-link") == "Print the poster"
    browser.get(page_url(daemon_a) + "api/operator/poster")
    assert "Open the page" in str(browser.execute_script("return document.body.textContent"))
    shown = "return [...document.images].map(i => i.naturalWidth && getComputedStyle(i).display)"
    assert browser.execute_script(shown) == ["block"]  # the data: SVG drawn, poster.css applied

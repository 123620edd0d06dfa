"""The page's inbox under load: a phone opens it on a box holding 1,000 private entries.

Setup, not timed: a data dir whose box keeps 20 people, each with a published key, and
1,000 private entries among them, of which ``for_phone`` are addressed to the phone (some
also to others) and the rest are between other people; the phone's own key is published
already. A ``meshnode run`` serves the page. Headless Chromium at phone size loads it from
a name only the browser resolves to 127.0.0.1, so, as on a phone at a LAN address, the
page is not a secure context (no WebCrypto: tweetnacl and the vendored BLAKE2b do the work).

``inbox_1000_s``: from the phone's opening its inbox (the page loaded and connected) to the
inbox shown with every message for it decrypted and its signature checked: loading the
inbox's modules, fetching every private entry from the box, trying each with the phone's
key, and drawing the conversations (goal <= 2 s). The median of ``runs`` fresh loads.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshnode.bench.lan import BenchDaemon
from meshnode.codec.content import (
    About,
    ContactAction,
    EncKey,
    PrivateInner,
    encode_about,
    encode_enckey,
    encode_private_inner,
    recipient_tag,
)
from meshnode.codec.message import ContentType, create_entry
from meshnode.core.node import Node
from meshnode.host.datadir import init_data_dir, store_path
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.private import enc_keypair, seal
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import FeedId, MsgId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["bench_inbox", "inbox_1000_s"]

_PAGE = re.compile(r"page on http://127\.0\.0\.1:(\d+)/")
_LAN_NAME = "village.test"  # resolved by the browser alone (--host-resolver-rules)
_TS_MS = 1_764_662_400_000
_PHONE = Identity(bytes(range(32)))
_WAIT_S = 60.0


class _Feed:
    """Signs the next entries of one feed, straight into the box's node."""

    def __init__(self, who: Identity, node: Node) -> None:
        self.who, self.node = who, node
        self.seq = 0
        self.previous: MsgId | None = None
        self.secret_key = enc_keypair(who.seed).secret_key

    def add(self, content_type: ContentType, content: bytes) -> None:
        self.seq += 1
        entry = create_entry(
            self.who,
            DEFAULT_NETWORK_KEY,
            seq=Seq(self.seq),
            previous=self.previous,
            timestamp_ms=_TS_MS + self.seq * 1000,
            content_type=content_type,
            content=content,
        )
        self.previous = MsgId(entry.id)
        self.node.ingest(entry.raw)


def _private(author: _Feed, to: list[Identity], text: str) -> bytes:
    tags = tuple(recipient_tag(r.feed_id) for r in to)
    inner = PrivateInner(content_type=ContentType.POST, recipient_tags=tags, payload=text.encode())
    pks = [enc_keypair(r.seed).public_key for r in to]
    return seal(encode_private_inner(inner), pks, author.secret_key)


def _prepare(data: Path, people: int, entries: int, for_phone: int) -> None:
    """A box keeping ``people`` feeds and the phone's, with ``entries`` private entries."""
    box = init_data_dir(data, None)
    store = FileStore(store_path(data), StoreConfig(fsync="never"))
    node = Node(box, network_key=DEFAULT_NETWORK_KEY, store=store, rng=random.Random(1))
    try:
        others = [Identity(bytes([40 + i]) * 32) for i in range(people)]
        feeds = [_Feed(who, node) for who in [_PHONE, *others]]
        for i, feed in enumerate(feeds):
            node.set_contact(ContactAction.FOLLOW, feed.who.feed_id, timestamp_ms=_TS_MS)
            feed.add(ContentType.ABOUT, encode_about(About(name=f"Person {i}", description="")))
            key = EncKey(key=enc_keypair(feed.who.seed).public_key, homes=(FeedId(box.feed_id),))
            feed.add(ContentType.ENCKEY, encode_enckey(key))
        rng = random.Random(7)
        for n in range(entries):
            author = feeds[1 + n % people]
            strangers = [o for o in others if o != author.who]
            to = rng.sample(strangers, rng.randint(1, 3))
            if n % (entries // for_phone) == 0:
                to = [_PHONE, *to[: rng.randint(0, 2)]]
            author.add(ContentType.PRIVATE, _private(author, to, f"message {n} " + "x" * 40))
    finally:
        node.close()


def _open_inbox(driver: Any, url: str) -> tuple[float, int]:
    """Seconds from opening the inbox to its being shown, and the messages found."""
    from selenium.webdriver.support.wait import WebDriverWait

    driver.get(url)
    script = "localStorage.clear(); localStorage.setItem('meshnode.seed', arguments[0])"
    driver.execute_script(script, _PHONE.seed.hex())
    driver.refresh()
    wait = WebDriverWait(driver, _WAIT_S, poll_frequency=0.01)
    status = "return document.getElementById('box-status').textContent"
    wait.until(lambda d: "Connected" in str(d.execute_script(status)))
    driver.execute_script("window.openedAt = performance.now(); location.hash = '#inbox'")
    shown = wait.until(
        lambda d: d.execute_script(
            "const t = window.meshnodeInbox; return t && t.shownMs ? t : null"
        )
    )
    opened = float(driver.execute_script("return window.openedAt"))
    return (float(shown["shownMs"]) - opened) / 1000, int(shown["found"])


@contextlib.contextmanager
def _chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        raise RuntimeError("bench inbox: chromium and chromedriver are needed (apt: chromium)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--host-resolver-rules=MAP {_LAN_NAME} 127.0.0.1",
    ):
        options.add_argument(argument)
    metrics = {"width": 360, "height": 740, "pixelRatio": 2.0}
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def bench_inbox(
    people: int = 20, entries: int = 1000, for_phone: int = 50, runs: int = 3
) -> dict[str, object]:
    """Open the inbox ``runs`` times on a box of ``entries`` private entries; the figures."""
    with tempfile.TemporaryDirectory(prefix="mninbox") as tmp:
        data = Path(tmp) / "box"
        _prepare(data, people, entries, for_phone)
        daemon = BenchDaemon(data)
        try:
            _, match = daemon.wait_for(_PAGE)
            url = f"http://{_LAN_NAME}:{match.group(1)}/"
            seconds: list[float] = []
            with _chromium() as driver:
                for _ in range(runs):
                    took, found = _open_inbox(driver, url)
                    if found != for_phone:
                        raise RuntimeError(f"the inbox found {found} messages, not {for_phone}")
                    seconds.append(took)
                    time.sleep(0.5)  # let the page's reach and event requests settle
        finally:
            daemon.stop()
    return {
        "inbox_1000_s": round(statistics.median(seconds), 3),
        "inbox_runs_s": [round(s, 3) for s in seconds],
        "inbox_entries": entries,
        "inbox_for_phone": for_phone,
    }


def inbox_1000_s() -> float:
    """The median seconds a phone takes to open an inbox among 1,000 private entries."""
    return float(str(bench_inbox()["inbox_1000_s"]))

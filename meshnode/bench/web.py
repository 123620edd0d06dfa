"""Web benchmark: the village page of a `meshnode run` under 50 phones and a steady poster.

Setup, not timed: a data dir with 10,000 signed entries over 100 followed feeds. The daemon
runs as a process (``--no-mdns``) once without the page, for its baseline memory, then with
it. The phones are this process: 50 server-sent event streams held open while one phone
posts a signed entry per second, and a reader asks for the timeline five times a second.
The client is plain asyncio HTTP/1.1 (one connection per request), so the figures include
connection set-up, as a phone's would.

* ``page_p99_ms``: 99th percentile of GET /api/timeline, request to full answer (<= 100).
* ``fanout_p99_ms``: 99th percentile, over the posts, of the time from sending a post to
  its being seen on all 50 streams (<= 250): an upper bound of "accepted, then seen".
* ``rss_added_mb``: daemon RSS with the page and 50 phones, less without the page (<= 25).
* ``first_load_kb``: bytes a browser transfers for a first load (gzip), headers included:
  the page, its style, its script with every module it imports, and the English
  catalogue; the backup's modules load only when opened (<= 150).
* ``posts_rejected``: posts not answered 201 (goal 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from meshnode.bench.ingest import make_feeds
from meshnode.bench.lan import BenchDaemon
from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType, create_entry
from meshnode.core.node import Node
from meshnode.host.datadir import init_data_dir, store_path
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, format_feed_id
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import MsgId, Seq

__all__ = ["bench_web"]

_TS_MS = 1_700_000_000_000
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_PAGE = re.compile(r"page on http://127\.0\.0\.1:(\d+)/")
_IMPORT = re.compile(r"""(?:import|from)\s*["']\./([^"']+)["']""")
_ASSET = re.compile(r"""(?:src|href)="/static/([^"]+)\"""")


def _prepare(root: Path, feeds: int, per_feed: int) -> Path:
    data = root / "box"
    me = init_data_dir(data, None)
    node = Node(
        me,
        network_key=DEFAULT_NETWORK_KEY,
        store=FileStore(store_path(data), StoreConfig(fsync="never")),
        rng=random.Random(1),
    )
    chains = make_feeds(feeds, per_feed)
    for chain in chains:
        node.set_contact(ContactAction.FOLLOW, chain[0].author, timestamp_ms=_TS_MS)
    for i in range(per_feed):
        for chain in chains:
            node.ingest(chain[i].raw)
    node.close()
    return data


async def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: str = ""
) -> tuple[int, bytes, int]:
    """One HTTP/1.1 request on its own connection: status, body, bytes received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    writer.write((head + headers + "\r\n").encode() + body)
    raw = await reader.read(-1)
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload, len(raw)


async def _first_load_bytes(port: int) -> int:
    gzip_ok = "Accept-Encoding: gzip\r\n"
    _, page, total = await _request(port, "GET", "/", headers=gzip_ok)
    _, plain, _ = await _request(port, "GET", "/")
    # The page's tags, every module its script imports, and the catalogue it fetches.
    todo, done = [*_ASSET.findall(plain.decode()), "i18n/en.json"], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        _, _, size = await _request(port, "GET", f"/static/{name}", headers=gzip_ok)
        total += size
        if name.endswith(".js"):
            _, source, _ = await _request(port, "GET", f"/static/{name}")
            folder = name.rpartition("/")[0]
            todo += [f"{folder}/{dep}".lstrip("/") for dep in _IMPORT.findall(source.decode())]
    del page
    return total


class _Phone:
    """One open event stream: when it first heard of each seq of the poster's feed."""

    def __init__(self, feed: str, news: asyncio.Event) -> None:
        self.feed = feed
        self.heard: dict[int, float] = {}
        self.ready = asyncio.Event()
        self.news = news  # set whenever any phone hears a new seq

    async def listen(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        try:
            async for line in reader:
                if line.startswith(b"retry:"):
                    self.ready.set()
                elif line.startswith(b"data: "):
                    feeds = json.loads(line[6:]).get("feeds", {})
                    seq = feeds.get(self.feed)
                    if isinstance(seq, int) and seq not in self.heard:
                        self.heard[seq] = time.perf_counter()
                        self.news.set()
        finally:
            writer.close()


async def _load(port: int, phones: int, posts: int, interval_s: float) -> dict[str, object]:
    poster = Identity(bytes([77]) * 32)
    feed = format_feed_id(poster.feed_id)
    news = asyncio.Event()
    listeners = [_Phone(feed, news) for _ in range(phones)]
    tasks = [asyncio.create_task(p.listen(port)) for p in listeners]
    await asyncio.wait_for(asyncio.gather(*(p.ready.wait() for p in listeners)), 30)
    page_ms: list[float] = []
    stop = asyncio.Event()

    async def read_timeline() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            status, _, _ = await _request(port, "GET", "/api/timeline?limit=20")
            if status == 200:
                page_ms.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.2)

    reader = asyncio.create_task(read_timeline())
    fanout_ms: list[float] = []
    rejected = 0
    previous: MsgId | None = None
    for seq in range(1, posts + 1):
        entry = create_entry(
            poster,
            DEFAULT_NETWORK_KEY,
            seq=Seq(seq),
            previous=previous,
            timestamp_ms=int(time.time() * 1000),
            content_type=ContentType.POST,
            content=f"post {seq} from the bench's phone".encode(),
        )
        previous = entry.id
        sent = time.perf_counter()
        status, _, _ = await _request(port, "POST", "/api/entries", entry.raw)
        rejected += status != 201
        deadline = sent + 5.0
        while any(seq not in p.heard for p in listeners) and time.perf_counter() < deadline:
            news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), deadline - time.perf_counter())
        heard = [p.heard.get(seq, deadline) for p in listeners]
        fanout_ms.append((max(heard) - sent) * 1000)
        await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - sent)))
    stop.set()
    await reader
    first_load = await _first_load_bytes(port)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "page_p99_ms": round(_p99(page_ms), 1),
        "page_median_ms": round(statistics.median(page_ms), 1),
        "fanout_p99_ms": round(_p99(fanout_ms), 1),
        "fanout_median_ms": round(statistics.median(fanout_ms), 1),
        "first_load_kb": round(first_load / 1024, 1),
        "posts_rejected": rejected,
        "pages_read": len(page_ms),
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def bench_web(
    feeds: int = 100,
    per_feed: int = 100,
    phones: int = 50,
    posts: int = 60,
    interval_s: float = 1.0,
) -> dict[str, object]:
    """A box of ``feeds`` x ``per_feed`` entries, ``phones`` streams, a post per interval."""
    with tempfile.TemporaryDirectory(prefix="mnweb") as tmp:
        data = _prepare(Path(tmp), feeds, per_feed)
        plain = BenchDaemon(data, "--no-web")
        try:
            plain.wait_for(_LISTENING)
            time.sleep(1.0)
            rss_without = plain.rss_mb()
        finally:
            plain.stop()
        daemon = BenchDaemon(data)
        try:
            _, match = daemon.wait_for(_PAGE)
            figures = asyncio.run(_load(int(match.group(1)), phones, posts, interval_s))
            rss_with = daemon.rss_mb()
        finally:
            daemon.stop()
    return {
        "entries": feeds * per_feed,
        "phones": phones,
        "posts": posts,
        **figures,
        "rss_added_mb": round(rss_with - rss_without, 1),
    }

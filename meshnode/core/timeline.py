"""The timeline: entries of every feed the box keeps, newest claimed time first, in pages.

A page is found without reading whole feeds: each feed is searched for its newest entry
before the cursor (seqs are in time order within a feed, as honest authors post), and a
heap merges the feeds from there, reading one entry at a time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.message import decode_entry
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.types import FeedId, Seq

if TYPE_CHECKING:
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node

__all__ = [
    "MAX_PAGE",
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "read_entry",
    "timeline_page",
]

MAX_PAGE = 100  # entries per page at most, whatever a client asks

_Key = tuple[int, bytes, int]  # (timestamp_ms, feed, seq): a total order, newest largest


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: strictly older than this key."""

    timestamp_ms: int
    feed: FeedId
    seq: int


def encode_cursor(cursor: Cursor) -> str:
    """Text form for a URL: ``TIMESTAMP-FEEDHEX-SEQ``."""
    return f"{cursor.timestamp_ms}-{cursor.feed.hex()}-{cursor.seq}"


def decode_cursor(text: str) -> Cursor:
    """Parse ``encode_cursor``'s form; DecodeError when it is not one."""
    parts = text.split("-")
    try:
        ts, feed, seq = int(parts[0]), bytes.fromhex(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise DecodeError("cursor must be TIMESTAMP-FEEDHEX-SEQ") from None
    if len(parts) != 3 or len(feed) != 32 or ts < 0 or seq < 1:
        raise DecodeError("cursor must be TIMESTAMP-FEEDHEX-SEQ")
    return Cursor(ts, FeedId(feed), seq)


def timeline_page(
    node: Node, *, limit: int, before: Cursor | None = None
) -> tuple[list[Entry], Cursor | None]:
    """Up to ``limit`` entries older than ``before``, newest first, and the next cursor."""
    limit = max(1, min(limit, MAX_PAGE))
    bound: _Key | None = None
    if before is not None:
        bound = (before.timestamp_ms, before.feed, before.seq)
    heap: list[tuple[_Key, Entry]] = []
    for feed in node.replicated():
        entry = _newest_before(node, feed, bound)
        if entry is not None:
            heap.append((_neg(_key(entry)), entry))
    heapq.heapify(heap)
    page: list[Entry] = []
    while heap and len(page) < limit:
        _, entry = heapq.heappop(heap)
        page.append(entry)
        older = _older_than(node, entry.author, entry.seq)
        if older is not None:
            heapq.heappush(heap, (_neg(_key(older)), older))
    more = bool(heap) and len(page) == limit
    last = page[-1] if page and more else None
    return page, None if last is None else Cursor(last.timestamp_ms, last.author, last.seq)


def _key(entry: Entry) -> _Key:
    return (entry.timestamp_ms, bytes(entry.author), int(entry.seq))


def _neg(key: _Key) -> _Key:
    # heapq is a min-heap: order by the negated time and seq, and the inverted feed bytes.
    return (-key[0], bytes(255 - b for b in key[1]), -key[2])


def read_entry(node: Node, feed: FeedId, seq: int) -> Entry | None:
    """Entry ``seq`` of ``feed``, or None when it is evicted or damaged."""
    try:
        return decode_entry(node.store.get(feed, Seq(seq)), max_content_bytes=1 << 16)
    except (DecodeError, StoreCorrupt, KeyError):
        return None  # a damaged or evicted entry is skipped, never fatal to the page


def _newest_before(node: Node, feed: FeedId, bound: _Key | None) -> Entry | None:
    head = node.store.head(feed)
    if head is None:
        return None
    if bound is None:
        return read_entry(node, feed, head.latest) or _older_than(node, feed, head.latest)
    lo, hi, found = int(head.first), int(head.latest), None
    while lo <= hi:  # the newest seq whose key is below the bound
        mid = (lo + hi) // 2
        entry = read_entry(node, feed, mid)
        if entry is None:
            hi = mid - 1
            continue
        if _key(entry) < bound:
            found, lo = entry, mid + 1
        else:
            hi = mid - 1
    return found


def _older_than(node: Node, feed: FeedId, seq: int) -> Entry | None:
    """The newest readable entry of ``feed`` before ``seq``."""
    seq = int(seq)
    head = node.store.head(feed)
    while head is not None and seq > head.first:
        seq -= 1
        entry = read_entry(node, feed, seq)
        if entry is not None:
            return entry
    return None

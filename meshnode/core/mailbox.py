"""The mailbox: private entries kept past the caps of their author's feed, for a while.

A private entry's recipients cannot be read from it (codec/private.py), so the node does
not try to tell whose it is: it keeps every private entry it stores of another feed for
``keep_days`` counted from when it stored it (the author's claimed time plays no part),
whatever the caps of the author's feed say. After that, or when a limit below is reached,
the entry is "released" and the normal caps apply to it again.

The store holds one contiguous range per feed, so keeping an entry keeps the entries of
its feed after it too: a feed's *floor* is its oldest kept private entry, and eviction
stops there. What a floor holds is charged to the feed's author: every byte from the
floor to the feed's latest entry. The limits, each named and each reported by one
MailboxLimitReached event when it releases something (oldest first):

* ``max_bytes`` for all authors together (the oldest kept entry, by storing time, goes);
* ``max_bytes // author_share`` for one author (that author's oldest kept entry goes),
  so a stranger's flood pushes out only the stranger's own entries.

The index (``encode_index``) holds only what the store already shows to anyone holding the
feed, plus the storing time: author, seq, size. Nothing in it depends on who an entry is
for. The node also uses it to carry private entries first (``private_seqs``).
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.secure.identity import format_feed_id, parse_feed_id
from meshnode.types import FeedId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "DAY_MS",
    "INDEX_VERSION",
    "MAX_INDEX_BYTES",
    "Kept",
    "Mailbox",
    "MailboxConfig",
    "Release",
]

DAY_MS = 86_400_000
INDEX_VERSION = 1
# The index file is refused past this: at ~60 bytes a line it holds a million entries,
# more than max_bytes' largest sane value lets a box keep.
MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxConfig:
    """How long and how much the mailbox keeps; ``keep_days`` 0 turns it off."""

    keep_days: float = 30.0
    max_bytes: int = 64 << 20
    author_share: int = 8  # no author holds more than max_bytes // author_share

    @property
    def keep_ms(self) -> int:
        """``keep_days`` in milliseconds."""
        return int(self.keep_days * DAY_MS)

    @property
    def author_max_bytes(self) -> int:
        """The most one author's kept entries (and what they hold back) may take."""
        return self.max_bytes // self.author_share


@dataclass(frozen=True, slots=True)
class Kept:
    """One private entry the mailbox keeps."""

    seq: Seq
    stored_ms: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """Entries of ``feed`` up to ``seq`` are no longer kept, and which limit said so."""

    feed: FeedId
    seq: Seq  # the newest entry released
    limit: str  # "keep_days", "max_bytes" or "author_share"


@dataclass(slots=True)
class _Feed:
    kept: deque[Kept] = field(default_factory=deque)  # ascending seq
    tail: deque[tuple[Seq, int]] = field(default_factory=deque)  # floor..latest: (seq, size)
    tail_bytes: int = 0


class Mailbox:
    """Which private entries are kept past the caps, and what holding them costs."""

    def __init__(self, config: MailboxConfig) -> None:
        self.config = config
        self._feeds: dict[FeedId, _Feed] = {}
        self._total = 0
        # (stored_ms, seq, feed) of every kept entry; stale items are skipped when popped.
        self._heap: list[tuple[int, Seq, FeedId]] = []

    # -- what the node tells it ---------------------------------------------------------

    def stored(
        self, feed: FeedId, seq: Seq, size: int, *, private: bool, now_ms: int
    ) -> list[Release]:
        """An entry of ``feed`` was stored; a private one is kept. Returns what the limits
        released, so that the node can apply its caps to those feeds again."""
        state = self._feeds.get(feed)
        if not private:
            if state is not None:
                state.tail.append((seq, size))
                state.tail_bytes += size
                self._total += size
                return self._within_limits(feed)
            return []
        if not self.config.keep_days:
            return []
        if state is None:
            state = self._feeds[feed] = _Feed()
        state.kept.append(Kept(seq, now_ms, size))
        state.tail.append((seq, size))
        state.tail_bytes += size
        self._total += size
        heapq.heappush(self._heap, (now_ms, seq, feed))
        return self._within_limits(feed)

    def evicted(self, feed: FeedId, below: Seq) -> None:
        """The store dropped entries of ``feed`` below ``below``; forget them."""
        state = self._feeds.get(feed)
        if state is not None:
            self._drop_below(feed, state, below)

    def expire(self, now_ms: int) -> list[Release]:
        """Release every entry kept longer than ``keep_days`` as of ``now_ms``."""
        horizon = now_ms - self.config.keep_ms
        out: list[Release] = []
        while (oldest := self._oldest()) is not None and oldest[0] <= horizon:
            out.append(self._release(oldest[2], oldest[1], "keep_days"))
        return out

    # -- what the node asks -------------------------------------------------------------

    def floor(self, feed: FeedId) -> Seq | None:
        """The oldest kept entry of ``feed``: eviction stops below it. None when none is."""
        state = self._feeds.get(feed)
        return state.kept[0].seq if state is not None and state.kept else None

    def private_seqs(self, feed: FeedId) -> list[Seq]:
        """Seqs of the kept private entries of ``feed``, ascending."""
        state = self._feeds.get(feed)
        return [k.seq for k in state.kept] if state is not None else []

    def kept(self) -> Iterator[tuple[FeedId, Kept]]:
        """Every kept entry, by feed then seq."""
        for feed in sorted(self._feeds):
            for k in self._feeds[feed].kept:
                yield feed, k

    def charge(self, feed: FeedId) -> int:
        """Bytes ``feed``'s kept entries hold: from its floor to its latest entry."""
        state = self._feeds.get(feed)
        return state.tail_bytes if state is not None else 0

    def charge_total(self) -> int:
        """Bytes all kept entries hold, together."""
        return self._total

    def status(self) -> dict[str, object]:
        """JSON-ready totals and limits (nothing per author)."""
        return {
            "kept_entries": sum(len(s.kept) for s in self._feeds.values()),
            "authors": len(self._feeds),
            "held_bytes": self._total,
            "max_bytes": self.config.max_bytes,
            "author_max_bytes": self.config.author_max_bytes,
            "keep_days": self.config.keep_days,
        }

    # -- limits -------------------------------------------------------------------------

    def _within_limits(self, feed: FeedId) -> list[Release]:
        out: list[Release] = []
        state = self._feeds.get(feed)
        while state is not None and state.kept and state.tail_bytes > self.config.author_max_bytes:
            out.append(self._release(feed, state.kept[0].seq, "author_share"))
            state = self._feeds.get(feed)
        while self._total > self.config.max_bytes and (oldest := self._oldest()) is not None:
            out.append(self._release(oldest[2], oldest[1], "max_bytes"))
        return out

    def _oldest(self) -> tuple[int, Seq, FeedId] | None:
        """The kept entry stored first, skipping heap items already released."""
        while self._heap:
            _, seq, feed = self._heap[0]
            state = self._feeds.get(feed)
            if state is not None and state.kept and state.kept[0].seq <= seq:
                return self._heap[0]
            heapq.heappop(self._heap)
        return None

    def _release(self, feed: FeedId, seq: Seq, limit: str) -> Release:
        """Stop keeping ``feed``'s entries up to ``seq``: its floor moves to the next one."""
        state = self._feeds[feed]
        while state.kept and state.kept[0].seq <= seq:
            state.kept.popleft()
        below = state.kept[0].seq if state.kept else None
        if below is None:
            self._total -= state.tail_bytes
            del self._feeds[feed]
        else:
            self._drop_below(feed, state, below)
        return Release(feed=feed, seq=seq, limit=limit)

    def _drop_below(self, feed: FeedId, state: _Feed, below: Seq) -> None:
        """Forget entries below ``below``; the tail then starts at the floor left."""
        while state.kept and state.kept[0].seq < below:
            state.kept.popleft()
        if not state.kept:
            self._total -= state.tail_bytes
            del self._feeds[feed]
            return
        floor = state.kept[0].seq
        while state.tail and state.tail[0][0] < floor:
            _, size = state.tail.popleft()
            state.tail_bytes -= size
            self._total -= size

    # -- the index file -----------------------------------------------------------------

    def encode_index(self) -> bytes:
        """The index as stored in the data dir: JSON, one kept entry per list item."""
        feeds = {
            format_feed_id(feed): {
                "kept": [[k.seq, k.stored_ms, k.size] for k in state.kept],
                "tail": [[seq, size] for seq, size in state.tail],
            }
            for feed, state in sorted(self._feeds.items())
        }
        return json.dumps({"version": INDEX_VERSION, "feeds": feeds}, sort_keys=True).encode()

    def reconcile(self, ranges: Mapping[FeedId, tuple[Seq, Seq]]) -> None:
        """Forget what the store no longer holds (a loaded index may be older than it)."""
        for feed in list(self._feeds):
            held = ranges.get(feed)
            state = self._feeds[feed]
            if held is not None:
                while state.tail and state.tail[-1][0] > held[1]:
                    _, size = state.tail.pop()
                    state.tail_bytes -= size
                    self._total -= size
                while state.kept and state.kept[-1].seq > held[1]:
                    state.kept.pop()
            if held is None or not state.kept:
                self._total -= state.tail_bytes
                del self._feeds[feed]
            else:
                self._drop_below(feed, state, held[0])

    def load_index(self, data: bytes) -> None:
        """Replace what is kept with a stored index; DecodeError when it is not one."""
        if len(data) > MAX_INDEX_BYTES:
            raise DecodeError(f"mailbox index over {MAX_INDEX_BYTES} bytes")
        try:
            doc = json.loads(data)
            if doc.get("version") != INDEX_VERSION:
                raise DecodeError(f"mailbox index version {doc.get('version')!r} unknown")
            feeds = {parse_feed_id(k): _decode_feed(v) for k, v in doc["feeds"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DecodeError(f"mailbox index unreadable: {exc}") from exc
        self._feeds = {f: s for f, s in feeds.items() if s.kept}
        self._total = sum(s.tail_bytes for s in self._feeds.values())
        self._heap = [(k.stored_ms, k.seq, f) for f, s in self._feeds.items() for k in s.kept]
        heapq.heapify(self._heap)


def _decode_feed(value: dict[str, list[list[int]]]) -> _Feed:
    state = _Feed()
    for seq, stored_ms, size in value["kept"]:
        state.kept.append(Kept(Seq(int(seq)), int(stored_ms), int(size)))
    for seq, size in value["tail"]:
        state.tail.append((Seq(int(seq)), int(size)))
        state.tail_bytes += int(size)
    return state

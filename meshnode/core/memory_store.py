"""In-memory Store: the reference backend for tests and the simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import nacl.utils

from meshnode.codec.message import ContentType, Entry
from meshnode.core.feed import FeedHead
from meshnode.core.store import ForkRecord, StoreStats, check_restart, evict_oldest
from meshnode.errors import LocalProtocolError
from meshnode.types import FeedId, MsgId, PeerId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MemoryStore"]


class _Feed:
    __slots__ = ("bytes", "contacts", "first", "ids", "raws")

    def __init__(self, first: Seq) -> None:
        self.first = first
        self.raws: list[bytes] = []
        self.ids: list[MsgId] = []
        self.contacts: list[Seq] = []
        self.bytes = 0


class MemoryStore:
    """Keeps everything in dicts; nothing survives the process."""

    def __init__(self, epoch: bytes | None = None) -> None:
        self._epoch = epoch if epoch is not None else nacl.utils.random(8)
        self._feeds: dict[FeedId, _Feed] = {}
        self._forks: list[ForkRecord] = []
        self._entries = 0
        self._bytes = 0
        self._peers: dict[PeerId, bytes] = {}

    @property
    def epoch(self) -> bytes:
        """Random id of this store (libsodium's generator, as a fresh disk would get)."""
        return self._epoch

    def head(self, feed: FeedId) -> FeedHead | None:
        """Range held and latest id."""
        f = self._feeds.get(feed)
        if f is None:
            return None
        return FeedHead(f.first, Seq(f.first + len(f.raws) - 1), f.ids[-1])

    def latest_seq(self, feed: FeedId) -> Seq:
        """Latest seq held; 0 when none."""
        f = self._feeds.get(feed)
        return Seq(f.first + len(f.raws) - 1) if f else Seq(0)

    def get(self, feed: FeedId, seq: Seq) -> bytes:
        """Stored bytes of (feed, seq)."""
        f = self._feeds.get(feed)
        if f is None or not f.first <= seq < f.first + len(f.raws):
            raise KeyError((feed, seq))
        return f.raws[seq - f.first]

    def entry_id(self, feed: FeedId, seq: Seq) -> MsgId | None:
        """Id of the held entry, or None."""
        f = self._feeds.get(feed)
        if f is None or not f.first <= seq < f.first + len(f.ids):
            return None
        return f.ids[seq - f.first]

    def feeds(self) -> list[FeedId]:
        """Feeds held."""
        return list(self._feeds)

    def clock(self) -> dict[FeedId, Seq]:
        """Latest seq per feed."""
        return {k: Seq(f.first + len(f.raws) - 1) for k, f in self._feeds.items()}

    def ranges(self) -> dict[FeedId, tuple[Seq, Seq]]:
        """(first, latest) per feed."""
        return {k: (f.first, Seq(f.first + len(f.raws) - 1)) for k, f in self._feeds.items()}

    def feed_bytes(self, feed: FeedId) -> int:
        """Live bytes of a feed."""
        f = self._feeds.get(feed)
        return f.bytes if f else 0

    def stats(self) -> StoreStats:
        """Totals."""
        return StoreStats(
            feeds=len(self._feeds),
            entries=self._entries,
            entry_bytes=self._bytes,
            file_bytes=self._bytes,
        )

    def contacts(self) -> Iterator[tuple[FeedId, Seq]]:
        """Held CONTACT entries."""
        for feed, f in self._feeds.items():
            for seq in f.contacts:
                if seq >= f.first:
                    yield feed, seq

    def append(self, entry: Entry) -> None:
        """Add the next entry of a feed."""
        f = self._feeds.get(entry.author)
        if f is None:
            f = self._feeds[entry.author] = _Feed(entry.seq)
        elif entry.seq != f.first + len(f.raws):
            raise LocalProtocolError(f"append of seq {entry.seq} does not extend the feed")
        f.raws.append(entry.raw)
        f.ids.append(entry.id)
        f.bytes += len(entry.raw)
        self._entries += 1
        self._bytes += len(entry.raw)
        if entry.content_type == ContentType.CONTACT:
            f.contacts.append(entry.seq)

    def evict(self, feed: FeedId, below: Seq) -> int:
        """Drop entries below ``below``, keeping at least the latest."""
        f = self._feeds.get(feed)
        if f is None:
            return 0
        f.first, f.contacts, (raws, _) = evict_oldest(f.first, below, (f.raws, f.ids), f.contacts)
        freed = sum(len(r) for r in raws)
        f.bytes -= freed
        self._entries -= len(raws)
        self._bytes -= freed
        return freed

    def restart(self, entry: Entry) -> int:
        """Make ``entry`` the first entry held of its feed, past a gap; returns bytes freed."""
        f = self._feeds.get(entry.author)
        check_restart(None if f is None else f.first + len(f.raws) - 1, entry.seq)
        assert f is not None
        freed = f.bytes
        self._entries -= len(f.raws)
        self._bytes -= freed
        self._feeds[entry.author] = _Feed(entry.seq)  # in its place: feeds() keeps its order
        self.append(entry)
        return freed

    def record_fork(self, fork: ForkRecord) -> None:
        """Keep fork proof."""
        self._forks.append(fork)

    def forks(self) -> list[ForkRecord]:
        """Fork proofs."""
        return list(self._forks)

    def peer_state(self, peer: PeerId) -> bytes | None:
        """Stored replication memory of a peer."""
        return self._peers.get(peer)

    def set_peer_state(self, peer: PeerId, state: bytes) -> None:
        """Replace a peer's replication memory (it moves to the end: the latest set)."""
        if not state:
            raise LocalProtocolError("an empty peer state: forget_peer_state forgets")
        self._peers.pop(peer, None)
        self._peers[peer] = state

    def forget_peer_state(self, peer: PeerId) -> None:
        """Drop a peer's replication memory."""
        self._peers.pop(peer, None)

    def peers(self) -> dict[PeerId, int]:
        """Bytes per remembered peer, the least recently set first."""
        return {peer: len(state) for peer, state in self._peers.items()}

    def compact(self) -> int:
        """Evicted entries are already gone from memory."""
        return 0

    def flush(self) -> None:
        """Nothing to make durable."""

    def close(self) -> None:
        """Nothing to release."""

"""The Store protocol: the one seam between the core and the disk.

A store keeps, per feed, one contiguous range first..latest of full-form entries, plus
fork proofs; ``restart`` moves a feed's range past a gap (a capped feed's new tail). It
does not validate: the node checks every entry before ``append``. It is
synchronous; ``append`` returns once the record is handed to the OS (it survives the
process being killed), and ``flush`` makes everything durable according to the fsync
policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from meshnode.errors import LocalProtocolError
from meshnode.types import Seq

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableSequence, Sequence

    from meshnode.codec.message import Entry
    from meshnode.core.feed import FeedHead
    from meshnode.types import FeedId, MsgId, PeerId

__all__ = [
    "ForkRecord",
    "Store",
    "StoreStats",
    "check_restart",
    "entries_to_evict",
    "evict_oldest",
]

_S = TypeVar("_S", bound=int)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkRecord:
    """Proof that a feed forked: a valid entry that conflicts with the stored chain at seq."""

    feed: FeedId
    seq: Seq
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Sizes for status and caps."""

    feeds: int
    entries: int
    entry_bytes: int  # bytes of live entries (full form)
    file_bytes: int  # bytes on disk, dead records and framing included


class Store(Protocol):
    """What the core needs from storage."""

    @property
    def epoch(self) -> bytes:
        """8 random bytes fixed when the store was created; a wiped store gets new ones."""
        ...

    def head(self, feed: FeedId) -> FeedHead | None:
        """Range held of ``feed`` and its latest id, or None when nothing is held."""
        ...

    def latest_seq(self, feed: FeedId) -> Seq:
        """Latest seq held of ``feed``; 0 when none."""
        ...

    def get(self, feed: FeedId, seq: Seq) -> bytes:
        """Exact full-form bytes of (feed, seq). KeyError if not held; StoreCorrupt if damaged."""
        ...

    def entry_id(self, feed: FeedId, seq: Seq) -> MsgId | None:
        """Id of the held entry (feed, seq), or None."""
        ...

    def feeds(self) -> list[FeedId]:
        """Every feed with at least one entry held."""
        ...

    def clock(self) -> dict[FeedId, Seq]:
        """Latest seq per held feed."""
        ...

    def ranges(self) -> dict[FeedId, tuple[Seq, Seq]]:
        """(first, latest) per held feed."""
        ...

    def feed_bytes(self, feed: FeedId) -> int:
        """Bytes of live entries of ``feed``."""
        ...

    def stats(self) -> StoreStats:
        """Totals across the store."""
        ...

    def contacts(self) -> Iterator[tuple[FeedId, Seq]]:
        """(feed, seq) of every held entry whose content type is CONTACT, in seq order per feed."""
        ...

    def append(self, entry: Entry) -> None:
        """Store a checked entry: seq must be latest+1, or anything when the feed is empty.

        Raises StoreFull (nothing written) when there is no room, LocalProtocolError on a
        seq that does not extend the range.
        """
        ...

    def evict(self, feed: FeedId, below: Seq) -> int:
        """Forget entries of ``feed`` with seq < below (never the latest); returns bytes freed."""
        ...

    def restart(self, entry: Entry) -> int:
        """Store a checked entry past latest+1 of a held feed as the feed's new first entry,
        forgetting every entry held before it; returns bytes freed.

        All or nothing: a crash leaves the old range or the new one. Raises StoreFull
        (nothing changed) when there is no room, LocalProtocolError unless the feed is held
        and seq > latest+1.
        """
        ...

    def record_fork(self, fork: ForkRecord) -> None:
        """Keep fork proof; the feed then counts as forked."""
        ...

    def forks(self) -> list[ForkRecord]:
        """Every fork proof held."""
        ...

    def peer_state(self, peer: PeerId) -> bytes | None:
        """What replication remembered of ``peer`` (opaque bytes), or None."""
        ...

    def set_peer_state(self, peer: PeerId, state: bytes) -> None:
        """Remember ``state`` (not empty) for ``peer``, replacing what was there (atomically)."""
        ...

    def forget_peer_state(self, peer: PeerId) -> None:
        """Forget what was remembered of ``peer``, if anything."""
        ...

    def peers(self) -> dict[PeerId, int]:
        """Bytes stored for each remembered peer, the least recently set first."""
        ...

    def compact(self) -> int:
        """Reclaim the space of evicted entries; returns bytes reclaimed."""
        ...

    def flush(self) -> None:
        """Make every append so far durable (fsync, whatever the batching policy)."""
        ...

    def close(self) -> None:
        """Flush, write indexes, release the writer lock."""
        ...


# -- eviction, as every store does it ------------------------------------------------------


def entries_to_evict(first: Seq, held: int, below: Seq) -> int:
    """How many of ``held`` entries from ``first`` evict(feed, below) drops: never the latest."""
    return max(0, min(below - first, held - 1))


def evict_oldest(
    first: Seq, below: Seq, columns: Sequence[MutableSequence[Any]], contacts: Sequence[_S]
) -> tuple[Seq, list[_S], list[Sequence[Any]]]:
    """Cut a feed's entries below ``below`` (never the latest) off its per-entry ``columns``.

    Returns the new first seq, the contact seqs still held and what was cut from each column.
    """
    n = entries_to_evict(first, len(columns[0]), below)
    cut: list[Sequence[Any]] = [column[:n] for column in columns]
    for column in columns:
        del column[:n]
    first = Seq(first + n)
    return first, [seq for seq in contacts if seq >= first], cut


def check_restart(latest: int | None, seq: int) -> None:
    """Raise LocalProtocolError unless a feed held up to ``latest`` (None: not held) may
    restart at ``seq``: past latest+1, since latest+1 is an append."""
    if latest is None or seq <= latest + 1:
        held = "not held" if latest is None else f"held up to seq {latest}"
        raise LocalProtocolError(f"restart at seq {seq} does not skip past the feed ({held})")

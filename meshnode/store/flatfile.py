"""Flat-file Store: an append-only log of checksummed records plus a checkpointed index.

Directory layout::

    DIR/LOCK            flock(LOCK_EX | LOCK_NB) while open; holds the owner's pid as text
    DIR/EPOCH           16 hex digits (8 random bytes), written once when the store is created
    DIR/log/NNNNNNNN.seg   segments 00000000.seg, 00000001.seg, ...; appends go to the last
    DIR/index.bin       index checkpoint; optional, rebuilt from the log when missing or stale

Record (every integer little-endian)::

    length   u32   payload bytes (at most 16 MiB)
    crc      u32   zlib.crc32 of kind || payload
    kind     u8    1 ENTRY: the entry's full-form bytes, exactly as signed
                   2 EVICT: feed (32) || varint below: entries of feed with seq < below are gone
                   3 FORK:  feed (32) || varint seq || full-form bytes of the conflicting entry
                   4 PEER:  peer (32) || replication memory of that peer (opaque; none: forgotten)
                   5 RESTART: an entry's full-form bytes, as ENTRY, that starts its feed
                            afresh past a gap (a capped feed's new tail): every entry of the
                            feed before it is gone. One record: a crash leaves one range or
                            the other
    payload  length bytes

A new segment starts when a record would take the current one past ``segment_bytes``.
An offset is a u64: segment number << 40 | position in the segment (1 TiB per segment).
The latest EVICT record of a feed and the latest PEER record of a peer are in force;
earlier ones, the ENTRY records they evicted (or a RESTART left behind), and PEER records
that forget, are dead bytes that ``compact`` reclaims.

index.bin (every integer little-endian; a checksum failure or a different magic means
"rebuild")::

    magic "MNINDEX1" (8) | epoch (8) | covered segment u32 | covered position u64
    | tail_crc u32 (crc32 of the <= 4096 log bytes before the covered position)
    | segments u32 | feeds u32 | forks u32 | peers u32
    segments x (number u32 | size u64 | dead bytes u64)
    feeds x (feed 32 | first seq u64 | count u32 | contacts u32 | live bytes u64
             | offset of the EVICT in force u64 (2**64-1: none) | its record bytes u32
             | latest id 32 | count x offset u64 | count x payload bytes u32
             | contacts x CONTACT seq u64)
    forks x FORK record offset u64
    peers x (peer 32 | PEER record offset u64 | its record bytes u32)
    crc32 u32 of everything before

An index offset of 2**64-1 marks an entry whose record was lost to damage. The checkpoint
(about 12 bytes per entry) is written on close, when anything changed, and every
``checkpoint_bytes`` of log: tmp file, fsync, rename, fsync of the directory. Open loads
it when its epoch, segment list, segment sizes and tail_crc agree with the log, then
scans only the log after the covered position (at most about ``checkpoint_bytes`` after
a crash); otherwise it logs a warning and rebuilds by scanning the whole log. Scans
decode entries with decode_entry (structure only: signatures are not checked).

Damage. A bad record (impossible length or kind, cut short, checksum mismatch) ends where
the next plausible header whose checksum holds begins. In the last segment, a bad record
with nothing valid after it is a torn tail: open cuts it and logs how many bytes, except
for bytes that an index.bin of this store (even a stale one) covered, which were fsynced
and so are damage, not a torn write. Damage is skipped and logged, never cut; ``get``
raises StoreCorrupt for the entry it held and ``verify_log`` names it.

Durability. ``append`` hands each record to the OS with write(2) on an O_APPEND
descriptor before it returns (no user-space buffer), so ``kill -9`` loses nothing
acknowledged under any policy. Inside ``with store.holding():`` (a batch import) entry
records are gathered and handed over in one write(2) when the block ends, at ``flush``,
before any other record or a read that needs them, and every ``HELD_BYTES``; there
"acknowledged" means the block has ended (or ``flush`` returned), and ``kill -9`` may lose
the entries appended since. On a power cut, ``fsync="always"`` loses nothing
acknowledged; ``"batch"`` (default) loses at most the last ``fsync_batch_entries - 1``
appends (none that preceded a ``flush``); ``"never"`` loses what the OS had not yet
written back since the latest ``flush`` or close (on Linux, up to about 30 s of appends).
A failed fsync makes the store read-only until it is reopened.

Disk full: a failed write is truncated away, the index is left untouched and StoreFull
is raised; everything stored stays readable and the store stays usable. A failed write of
held entries is truncated away too and they leave the index, but the store is then
read-only until reopened, since its user acted on them already.

Compaction removes index.bin first, then rewrites each segment that holds dead records to
``NNNNNNNN.seg.tmp`` (live records only, fsynced), renames it over the segment and fsyncs
the directory, then writes a new checkpoint. A crash at any point leaves every segment in
its old or its new form, both consistent (the EVICT record in force is always kept, and
segments go in log order, so the entries a RESTART left behind go no later than it), and
the next open removes any ``.tmp`` file and rebuilds the index from the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from meshnode.core.feed import FeedHead
from meshnode.core.store import ForkRecord, StoreStats, check_restart
from meshnode.errors import ConfigError, DecodeError, LocalProtocolError
from meshnode.store._maintenance import (
    LogProblem,
    missing_entries,
    reindex_segment,
    replace_segment,
    verify_segment,
)
from meshnode.store._records import (
    HEADER_BYTES,
    Kind,
    decode_fork,
    decode_peer,
    encode_evict,
    encode_fork,
    encode_peer,
)
from meshnode.store._recovery import load_epoch, recover, segment_path
from meshnode.store._segments import SegmentReader
from meshnode.store._writer import HELD_BYTES, LogWriter
from meshnode.store.files import FileIo, fsync_dir, lock_store
from meshnode.types import FeedId, MsgId, PeerId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from types import TracebackType

    from meshnode.codec.message import Entry

__all__ = ["HELD_BYTES", "FileIo", "FileStore", "LogProblem", "StoreConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Tuning of a FileStore; the defaults suit an SD card."""

    fsync: Literal["always", "batch", "never"] = "batch"
    fsync_batch_entries: int = 1000
    segment_bytes: int = 64 << 20
    checkpoint_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if self.fsync not in ("always", "batch", "never"):
            raise ConfigError("store.fsync", f"must be always, batch or never, not {self.fsync!r}")
        for key in ("fsync_batch_entries", "segment_bytes", "checkpoint_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"store.{key}", "must be at least 1")
        if self.segment_bytes >= 1 << 40:
            raise ConfigError("store.segment_bytes", "must be below 1 TiB")


class FileStore:
    """Store on disk: one writer process, append-only segments, checkpointed index."""

    def __init__(
        self, path: Path | str, config: StoreConfig | None = None, *, io: FileIo | None = None
    ) -> None:
        self.path = Path(path)
        self.config = config if config is not None else StoreConfig()
        io = io if io is not None else FileIo()
        self._log_dir = self.path / "log"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._reader = SegmentReader(self.path, self._log_dir)
        # Appends after which the writer fsyncs, as the policy says (never: none).
        sync_after = {"always": 1, "batch": self.config.fsync_batch_entries}.get(
            self.config.fsync, 1 << 62
        )
        self._lock_fd = lock_store(self.path)
        try:
            self._epoch = load_epoch(self.path, io)
            self._index, since_checkpoint = recover(
                self.path, self._epoch, io, self.config.checkpoint_bytes
            )
            self._writer = LogWriter(
                self.path,
                self._epoch,
                self._index,
                io,
                since_checkpoint=since_checkpoint,
                segment_bytes=self.config.segment_bytes,
                checkpoint_bytes=self.config.checkpoint_bytes,
                sync_after=sync_after,
            )
        except BaseException:
            self._release()
            raise
        if self._writer.since_checkpoint >= self.config.checkpoint_bytes:
            self._writer.checkpoint()

    # -- seams: tests swap the OS calls and watch the write position --------------------

    @property
    def _io(self) -> FileIo:
        return self._writer.io

    @_io.setter
    def _io(self, io: FileIo) -> None:
        self._writer.io = io

    @property
    def _pos(self) -> int:
        return self._writer.pos

    @property
    def _written(self) -> int:
        return self._writer.written

    # -- reads --------------------------------------------------------------------------

    @property
    def epoch(self) -> bytes:
        """8 random bytes fixed when the store was created."""
        return self._epoch

    def head(self, feed: FeedId) -> FeedHead | None:
        """Range held and latest id."""
        fi = self._index.feeds.get(feed)
        return None if fi is None else FeedHead(fi.first, fi.latest, fi.latest_id)

    def latest_seq(self, feed: FeedId) -> Seq:
        """Latest seq held; 0 when none."""
        fi = self._index.feeds.get(feed)
        return fi.latest if fi is not None else Seq(0)

    def get(self, feed: FeedId, seq: Seq) -> bytes:
        """Stored bytes of (feed, seq), checksum-checked."""
        fi = self._index.feeds.get(feed)
        if fi is None or not fi.first <= seq <= fi.latest:
            raise KeyError((feed, seq))
        i = seq - fi.first
        self._writer.write_held()
        return self._reader.entry(feed, seq, fi.offsets[i], fi.sizes[i])

    def entry_id(self, feed: FeedId, seq: Seq) -> MsgId | None:
        """Id of the held entry, or None; StoreCorrupt if its record is damaged."""
        fi = self._index.feeds.get(feed)
        if fi is None or not fi.first <= seq <= fi.latest:
            return None
        if seq == fi.latest:
            return fi.latest_id
        return MsgId(hashlib.sha256(self.get(feed, seq)).digest())

    def feeds(self) -> list[FeedId]:
        """Feeds held."""
        return list(self._index.feeds)

    def clock(self) -> dict[FeedId, Seq]:
        """Latest seq per feed."""
        return {feed: fi.latest for feed, fi in self._index.feeds.items()}

    def ranges(self) -> dict[FeedId, tuple[Seq, Seq]]:
        """(first, latest) per feed."""
        return {feed: (fi.first, fi.latest) for feed, fi in self._index.feeds.items()}

    def feed_bytes(self, feed: FeedId) -> int:
        """Live bytes of a feed."""
        fi = self._index.feeds.get(feed)
        return fi.bytes if fi is not None else 0

    def stats(self) -> StoreStats:
        """Totals; file_bytes counts every segment, dead records included."""
        index = self._index
        return StoreStats(
            feeds=len(index.feeds),
            entries=index.entries,
            entry_bytes=index.entry_bytes,
            file_bytes=sum(index.segments.values()),
        )

    def dead_bytes(self) -> int:
        """Bytes of dead records that compact() would reclaim."""
        return sum(self._index.dead.values())

    def contacts(self) -> Iterator[tuple[FeedId, Seq]]:
        """Held CONTACT entries, in seq order per feed."""
        for feed, fi in self._index.feeds.items():
            for seq in fi.contacts:
                yield feed, Seq(seq)

    def forks(self) -> list[ForkRecord]:
        """Fork proofs (damaged ones are logged and left out)."""
        out = []
        self._writer.write_held()
        for offset in self._index.forks:
            found = self._reader.read(offset, None)
            try:
                if isinstance(found, str):
                    raise DecodeError(found)
                feed, seq, raw = decode_fork(found[1])
            except DecodeError as exc:
                log.error("fork proof at offset %d is damaged: %s", offset, exc)
                continue
            out.append(ForkRecord(feed=feed, seq=seq, raw=raw))
        return out

    def peer_state(self, peer: PeerId) -> bytes | None:
        """Stored replication memory of a peer; None when absent or damaged."""
        held = self._index.peers.get(peer)
        if held is None:
            return None
        self._writer.write_held()
        found = self._reader.read(held[0], held[1] - HEADER_BYTES)
        if isinstance(found, str):
            log.warning("forgetting damaged memory of a peer: %s", found)
            return None
        return decode_peer(found[1])[1]

    # -- writes -------------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Add the next entry of a feed (or the first one held)."""
        fi = self._index.feeds.get(entry.author)
        if fi is not None and entry.seq != fi.latest + 1:
            raise LocalProtocolError(f"append of seq {entry.seq} does not extend the feed")
        offset = self._writer.entry(entry, None if fi is None else fi.latest_id)
        self._index.add_entry(
            entry.author, entry.seq, entry.content_type, entry.id, offset, len(entry.raw)
        )
        self._writer.after_write()

    def holding(self) -> AbstractContextManager[None]:
        """Gather entry records in memory and write them in one go when the block ends."""
        return self._writer.holding()

    def evict(self, feed: FeedId, below: Seq) -> int:
        """Forget entries of ``feed`` below ``below``, never the latest; returns bytes freed."""
        n = self._index.evictable(feed, below)
        if n == 0:
            return 0
        below = Seq(self._index.feeds[feed].first + n)
        payload = encode_evict(feed, below)
        offset = self._writer.write(Kind.EVICT, payload)
        freed = self._index.evict(feed, below, offset, HEADER_BYTES + len(payload))
        self._writer.after_write()
        return freed

    def restart(self, entry: Entry) -> int:
        """Start a held feed afresh at ``entry``, past a gap; returns bytes freed.

        One RESTART record: a crash leaves the old range or the new one, never neither.
        """
        fi = self._index.feeds.get(entry.author)
        check_restart(None if fi is None else fi.latest, entry.seq)
        offset = self._writer.write(Kind.RESTART, entry.raw)
        freed = self._index.restart(
            entry.author, entry.seq, entry.content_type, entry.id, offset, len(entry.raw)
        )
        self._writer.after_write()
        return freed

    def record_fork(self, fork: ForkRecord) -> None:
        """Keep fork proof."""
        payload = encode_fork(fork.feed, fork.seq, fork.raw)
        self._index.forks.append(self._writer.write(Kind.FORK, payload))
        self._writer.after_write()

    def set_peer_state(self, peer: PeerId, state: bytes) -> None:
        """Replace a peer's replication memory (one record: all or nothing)."""
        if not state:
            raise LocalProtocolError("an empty peer state: forget_peer_state forgets")
        self._put_peer(peer, state)

    def forget_peer_state(self, peer: PeerId) -> None:
        """Forget a peer's replication memory: a PEER record with none, if it has one."""
        if peer in self._index.peers:
            self._put_peer(peer, b"")

    def _put_peer(self, peer: PeerId, state: bytes) -> None:
        payload = encode_peer(peer, state)
        offset = self._writer.write(Kind.PEER, payload)
        self._index.set_peer(peer, offset, HEADER_BYTES + len(payload), forgets=not state)
        self._writer.after_write()

    def peers(self) -> dict[PeerId, int]:
        """Record bytes per remembered peer, the least recently set first (log order)."""
        held = sorted(self._index.peers.items(), key=lambda item: item[1][0])
        return {peer: size for peer, (_, size) in held}

    # -- compaction, verification -------------------------------------------------------

    def compact(self) -> int:
        """Rewrite segments holding dead records without them; returns bytes reclaimed."""
        writer = self._writer
        writer.check_writable()
        writer.sync()
        # Until the new checkpoint, a crash makes the next open rebuild from the log, which
        # is consistent whichever of each segment's old and compacted forms it finds.
        (self.path / "index.bin").unlink(missing_ok=True)
        writer.checkpointed = False
        fsync_dir(self.path, io=writer.io)
        reclaimed = 0
        for number in sorted(n for n, dead in self._index.dead.items() if dead > 0):
            if number in self._index.segments:
                reclaimed += self._compact_segment(number)
        writer.checkpoint()
        return reclaimed

    def _compact_segment(self, number: int) -> int:
        """Replace one segment by its live records; returns bytes reclaimed."""
        index, active = self._index, number == self._writer.segment
        size = index.segments[number]
        new_size = replace_segment(index, self._writer.io, self._reader, number, active=active)
        if active:
            self._writer.reopen(new_size)
        if number in index.segments:
            reindex_segment(index, number, self._reader.fd(number), new_size)
        log.info("compacted %s from %d to %d bytes", self._segment_path(number), size, new_size)
        return size - new_size

    def verify_log(self) -> Iterator[LogProblem]:
        """Walk every record of every segment; yield each damaged stretch and what it hit."""
        self._writer.write_held()
        for number in sorted(self._index.segments):
            path = str(self._segment_path(number))
            yield from verify_segment(self._index, number, self._reader.fd(number), path)
        yield from missing_entries(self._index, str(self._log_dir))

    # -- files --------------------------------------------------------------------------

    def _segment_path(self, number: int) -> Path:
        return segment_path(self._log_dir, number)

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self) -> None:
        """fsync every append so far, whatever the policy."""
        self._writer.check_writable()
        self._writer.sync()

    def close(self) -> None:
        """Flush, write the index checkpoint, release the lock. Idempotent."""
        if self._writer.closed:
            return
        try:
            self._writer.close()
        finally:
            self._release()

    def _release(self) -> None:
        self._reader.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> FileStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

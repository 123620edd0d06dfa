"""Writing a flat-file store: records onto the last segment, held entries, fsyncs, checkpoints.

The formats and the durability each fsync policy gives are specified in the docstring of
``meshnode.store.flatfile``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING

from meshnode.errors import LocalProtocolError, StoreError
from meshnode.store._index import Covered, encode_checkpoint
from meshnode.store._records import MAX_PAYLOAD_BYTES, Kind, encode_record, pack_offset
from meshnode.store._recovery import segment_path, tail_crc
from meshnode.store.files import fsync_dir, store_error, write_all, write_atomically

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

    from meshnode.codec.message import Entry
    from meshnode.store._index import Index
    from meshnode.store.files import FileIo
    from meshnode.types import FeedId, MsgId

__all__ = ["HELD_BYTES", "LogWriter"]

log = logging.getLogger(__name__)

HELD_BYTES = 256 << 10  # held entry records are written once they reach this


class LogWriter:
    """The store's one writer: appends to the last segment, fsyncs and checkpoints the index."""

    def __init__(
        self,
        path: Path,
        epoch: bytes,
        index: Index,
        io: FileIo,
        *,
        since_checkpoint: int,
        segment_bytes: int,
        checkpoint_bytes: int,
        sync_after: int,
    ) -> None:
        self.path = path
        self.io = io
        self._log_dir = path / "log"
        self._epoch = epoch
        self._index = index
        self._segment_bytes = segment_bytes
        self._checkpoint_bytes = checkpoint_bytes
        self._sync_after = sync_after
        self.closed = False
        self.broken: str | None = None
        self.unsynced = 0
        self.since_checkpoint = since_checkpoint
        # Whether index.bin describes the store as it is: close then need not rewrite it.
        self.checkpointed = since_checkpoint == 0
        # Entry records appended inside ``holding()`` and not yet written, from ``written`` on.
        self._holding = 0
        self._held: list[bytes] = []
        self._held_entries: list[tuple[FeedId, MsgId | None]] = []  # feed, its latest id before
        self.segment = max(index.segments, default=0)
        self.fd = self._open_segment(self.segment)
        self.pos = index.segments.setdefault(self.segment, 0)
        self.written = self.pos

    # -- records ------------------------------------------------------------------------

    def entry(self, entry: Entry, latest_id: MsgId | None) -> int:
        """Write an ENTRY record (inside ``holding()``: queue it); returns its offset."""
        if self._holding:
            return self._hold(entry, latest_id)
        return self.write(Kind.ENTRY, entry.raw)

    def write(self, kind: Kind, payload: bytes) -> int:
        """Append one record; returns its offset. Nothing is left behind if it fails."""
        self.check_writable()
        self.write_held()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LocalProtocolError(f"record of {len(payload)} bytes is over the limit")
        record = encode_record(kind, payload)
        if self.pos > 0 and self.pos + len(record) > self._segment_bytes:
            self._roll()
        start = self.pos
        try:
            write_all(self.io, self.fd, record)
        except OSError as exc:
            self._undo(start, exc)
        self.pos += len(record)
        self.written = self.pos
        self._index.segments[self.segment] = self.pos
        self.since_checkpoint += len(record)
        self.checkpointed = False
        self.unsynced += 1
        return pack_offset(self.segment, start)

    def after_write(self) -> None:
        """Write held records past HELD_BYTES; fsync and checkpoint when they are due."""
        if self.pos - self.written >= HELD_BYTES:
            self.write_held()
        if self.unsynced >= self._sync_after:
            self.sync()
        if self.since_checkpoint >= self._checkpoint_bytes:
            self.checkpoint()

    def _undo(self, start: int, exc: OSError) -> None:
        """Cut a failed write back to ``start`` and raise the matching StoreError."""
        path = segment_path(self._log_dir, self.segment)
        try:
            self.io.truncate(self.fd, start)
        except OSError as cut:
            self.broken = f"a failed write to {path} could not be cut back ({cut})"
            raise StoreError(self.broken) from exc
        raise store_error(f"cannot write to {path}", exc) from exc

    def check_writable(self) -> None:
        """StoreError unless records may be written."""
        if self.closed:
            raise StoreError(f"store {self.path} is closed")
        if self.broken is not None:
            raise StoreError(f"store {self.path} is read-only until reopened: {self.broken}")

    # -- held entries -------------------------------------------------------------------

    @contextmanager
    def holding(self) -> Generator[None]:
        """Gather entry records in memory and write them in one go when the block ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self.broken is None and not self.closed:
                self.write_held()

    def _hold(self, entry: Entry, latest_id: MsgId | None) -> int:
        """Queue an entry record for the next write; returns its offset."""
        self.check_writable()
        record = encode_record(Kind.ENTRY, entry.raw)
        if self.pos + len(record) > self._segment_bytes or len(record) > MAX_PAYLOAD_BYTES:
            self.write_held()
            return self.write(Kind.ENTRY, entry.raw)  # rolls over, or refuses it
        start = self.pos
        self._held.append(record)
        self._held_entries.append((entry.author, latest_id))
        self.pos += len(record)
        self._index.segments[self.segment] = self.pos
        self.since_checkpoint += len(record)
        self.checkpointed = False
        self.unsynced += 1
        return pack_offset(self.segment, start)

    def write_held(self) -> None:
        """Hand the held entry records to the OS in one write."""
        if not self._held:
            return
        data = b"".join(self._held)
        start = self.written
        self._held = []
        try:
            write_all(self.io, self.fd, data)
        except OSError as exc:
            self._drop_held(start)
            try:
                self._undo(start, exc)
            finally:
                self.broken = f"held entries could not be written ({exc})"
        self.written = self.pos
        self._held_entries = []

    def _drop_held(self, start: int) -> None:
        """Take the held entries back out of the index (newest first)."""
        added = self._held_entries
        for feed, latest_id in reversed(added):
            self._index.drop_latest(feed, latest_id)
        self._held_entries = []
        self.since_checkpoint -= self.pos - start
        self.unsynced = max(0, self.unsynced - len(added))
        self.pos = self.written = start
        self._index.segments[self.segment] = start

    # -- segments and fsync -------------------------------------------------------------

    def _roll(self) -> None:
        """Start the next segment; the full one is fsynced first."""
        self.sync()
        fd = self._open_segment(self.segment + 1)
        os.close(self.fd)
        self.fd, self.segment, self.pos = fd, self.segment + 1, 0
        self.written = 0
        self._index.segments[self.segment] = 0

    def reopen(self, size: int) -> None:
        """Open the last segment again, just replaced by a compacted one of ``size`` bytes."""
        os.close(self.fd)
        self.fd, self.pos = self._open_segment(self.segment), size
        self.written = size

    def _open_segment(self, number: int) -> int:
        path = segment_path(self._log_dir, number)
        existed = path.exists()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if not existed:
                fsync_dir(self._log_dir, io=self.io)
        except OSError as exc:
            raise store_error(f"cannot create {path}", exc) from exc
        return fd

    def sync(self) -> None:
        """Write the held records and fsync every append so far."""
        self.write_held()
        if self.unsynced == 0 or self.fd < 0:
            return
        try:
            self.io.fsync(self.fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: stop writing.
            self.broken = f"fsync of {segment_path(self._log_dir, self.segment)} failed ({exc})"
            raise StoreError(self.broken) from exc
        self.unsynced = 0

    # -- checkpoint, lifecycle ----------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write index.bin for the log so far; a failure is logged (open will rebuild)."""
        path = self.path / "index.bin"
        try:
            self.sync()
            covered = Covered(
                self.segment,
                self.pos,
                tail_crc(segment_path(self._log_dir, self.segment), self.pos),
            )
            chunks = encode_checkpoint(self._index, self._epoch, covered)
            write_atomically(path, chunks, io=self.io)
        except (OSError, StoreError) as exc:
            log.warning("could not write index checkpoint %s: %s", path, exc)
            self.since_checkpoint = 0  # not again at every append; a later one may succeed
            return False
        self.since_checkpoint = 0
        self.checkpointed = True
        return True

    def close(self) -> None:
        """Flush and write the checkpoint (unless read-only), then close the segment."""
        try:
            if self.broken is None:
                self.sync()
                if not self.checkpointed:
                    self.checkpoint()
        finally:
            self.closed = True
            os.close(self.fd)
            self.fd = -1

"""Reading flat-file store segments back: cached read-only descriptors and checked entry reads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError, StoreCorrupt, StoreError
from meshnode.secure.identity import format_feed_id
from meshnode.store._records import (
    ENTRY_KINDS,
    MISSING,
    Kind,
    entry_key,
    read_record,
    segment_of,
)
from meshnode.store._recovery import segment_path

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.types import FeedId, Seq

__all__ = ["SegmentReader"]

_MAX_READERS = 32


class SegmentReader:
    """Reads records of the segments in ``log_dir``, keeping the latest used few open."""

    def __init__(self, store_path: Path, log_dir: Path) -> None:
        self.store_path = store_path
        self.log_dir = log_dir
        self._fds: dict[int, int] = {}
        self._closed = False

    def fd(self, number: int) -> int:
        """A read-only descriptor of segment ``number``."""
        fd = self._fds.pop(number, None)
        if fd is None:
            if len(self._fds) >= _MAX_READERS:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(segment_path(self.log_dir, number), os.O_RDONLY)
        self._fds[number] = fd  # re-inserted last: the dict is kept in LRU order
        return fd

    def forget(self, number: int) -> None:
        """Close the descriptor of segment ``number``, which is being replaced."""
        os.close(self._fds.pop(number))

    def read(self, offset: int, size: int | None) -> tuple[Kind, bytes] | str:
        """The record at ``offset``, or why it is damaged; StoreError if unreadable."""
        number, pos = segment_of(offset)
        if self._closed:
            raise StoreError(f"store {self.store_path} is closed")
        try:
            return read_record(self.fd(number), pos, size)
        except OSError as exc:
            raise StoreError(f"cannot read {segment_path(self.log_dir, number)}: {exc}") from exc

    def entry(self, feed: FeedId, seq: Seq, offset: int, size: int) -> bytes:
        """Stored bytes of (feed, seq) at ``offset``; StoreCorrupt unless that is what is there."""
        where = f"entry {seq} of {format_feed_id(feed)}"
        if offset == MISSING:
            raise StoreCorrupt(f"{where} was lost to a damaged record")
        found = self.read(offset, size)
        if isinstance(found, tuple) and found[0] in ENTRY_KINDS:
            try:
                if entry_key(found[1]) == (feed, seq):
                    return found[1]
            except DecodeError:
                pass
            found = "record holds another entry"
        elif isinstance(found, tuple):
            found = "record is not an entry"
        number, pos = segment_of(offset)
        path = segment_path(self.log_dir, number)
        raise StoreCorrupt(f"{where} at offset {offset} ({path} position {pos}): {found}")

    def close(self) -> None:
        """Close every descriptor; reads fail from now on."""
        self._closed = True
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

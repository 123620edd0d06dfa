"""Compaction and verification of flat-file store segments (format: meshnode.store.flatfile)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.store._records import (
    ENTRY_KINDS,
    HEADER_BYTES,
    MISSING,
    Damage,
    Kind,
    Record,
    decode_evict,
    decode_peer,
    encode_record,
    entry_key,
    pack_offset,
    scan_segment,
    segment_of,
)
from meshnode.store._recovery import segment_path
from meshnode.store.files import FileIo, fsync_dir, store_error, write_all
from meshnode.types import Seq

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from meshnode.store._index import Index
    from meshnode.store._segments import SegmentReader
    from meshnode.types import FeedId

__all__ = [
    "LogProblem",
    "missing_entries",
    "reindex_segment",
    "replace_segment",
    "verify_segment",
    "write_live",
]

log = logging.getLogger(__name__)

_FLUSH_BYTES = 1 << 20
# An entry's author and seq sit in its first 1 + 32 + 10 (largest varint) bytes.
_KEY_BYTES_MAX = 43


@dataclass(frozen=True, slots=True, kw_only=True)
class LogProblem:
    """Damage found by verify_log; feed and seq name the entry it hit, when known."""

    path: str
    pos: int | None
    feed: FeedId | None
    seq: Seq | None
    reason: str


def _is_live(index: Index, number: int, record: Record) -> bool:
    """Whether the index still refers to this record (FORK records always live)."""
    offset = pack_offset(number, record.pos)
    try:
        if record.kind in ENTRY_KINDS:
            feed, seq = entry_key(record.payload)
            fi = index.feeds.get(feed)
            i = seq - fi.first if fi is not None else -1
            return fi is not None and 0 <= i < len(fi.offsets) and fi.offsets[i] == offset
        if record.kind is Kind.EVICT:
            fi = index.feeds.get(decode_evict(record.payload)[0])
            return fi is not None and fi.evict_off == offset
        if record.kind is Kind.PEER:
            held = index.peers.get(decode_peer(record.payload)[0])
            return held is not None and held[0] == offset
    except DecodeError:
        return False
    return True


def write_live(
    index: Index, io: FileIo, src_fd: int, number: int, size: int, tmp: Path
) -> tuple[int, list[tuple[FeedId, Seq, int]]]:
    """Copy the live records of a segment to ``tmp`` (fsynced).

    Returns the new size and the index slots whose records were found damaged (dropped).
    """
    damaged: list[tuple[FeedId, Seq, int]] = []
    written = 0
    buf = bytearray()
    tmp.unlink(missing_ok=True)  # a leftover, or a link planted there: never written through
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        for item in scan_segment(src_fd, 0, size):
            if isinstance(item, Damage):
                hit = index.slots_between(
                    pack_offset(number, item.pos), pack_offset(number, item.end)
                )
                log.error(
                    "compaction drops %d damaged bytes at position %d of segment %d (%d entries)",
                    item.end - item.pos, item.pos, number, len(hit),
                )  # fmt: skip
                damaged += hit
            elif _is_live(index, number, item):
                buf += encode_record(item.kind, item.payload)
                if len(buf) >= _FLUSH_BYTES:
                    write_all(io, out, bytes(buf))
                    written += len(buf)
                    buf.clear()
        write_all(io, out, bytes(buf))
        io.fsync(out)
    finally:
        os.close(out)
    return written + len(buf), damaged


def replace_segment(
    index: Index, io: FileIo, reader: SegmentReader, number: int, *, active: bool
) -> int:
    """Swap segment ``number`` for a copy of its live records; returns its new size.

    An emptied segment is deleted unless it is the ``active`` one. The index forgets the
    entries of damaged records; the caller points it at the new segment (reindex_segment).
    """
    path = segment_path(reader.log_dir, number)
    tmp, size = path.with_name(path.name + ".tmp"), index.segments[number]
    try:
        new_size, damaged = write_live(index, io, reader.fd(number), number, size, tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise store_error(f"cannot compact {path}", exc) from exc
    reader.forget(number)
    gone = new_size == 0 and not active
    try:
        if gone:
            tmp.unlink()
            path.unlink()
        else:
            tmp.replace(path)
        fsync_dir(path.parent, io=io)
    except OSError as exc:
        raise store_error(f"cannot compact {path}", exc) from exc
    if gone:
        del index.segments[number], index.dead[number]
    index.forget(damaged)
    return new_size


def reindex_segment(index: Index, number: int, fd: int, size: int) -> None:
    """Point the index at the records of a freshly compacted segment."""
    forks = [o for o in index.forks if segment_of(o)[0] != number]
    for item in scan_segment(fd, 0, size):
        if not isinstance(item, Record):
            raise AssertionError(f"compacted segment {number} is damaged at {item.pos}")
        offset = pack_offset(number, item.pos)
        record_bytes = item.end - item.pos
        if item.kind in ENTRY_KINDS:
            feed, seq = entry_key(item.payload)
            fi = index.feeds[feed]
            fi.offsets[seq - fi.first] = offset
        elif item.kind is Kind.EVICT:
            fi = index.feeds[decode_evict(item.payload)[0]]
            fi.evict_off, fi.evict_len = offset, record_bytes
        elif item.kind is Kind.PEER:
            index.peers[decode_peer(item.payload)[0]] = (offset, record_bytes)
        else:
            forks.append(offset)
    index.forks = sorted(forks)
    index.segments[number] = size
    index.dead[number] = 0


def verify_segment(index: Index, number: int, fd: int, path: str) -> Iterator[LogProblem]:
    """Every damaged stretch of one segment, named by the entries it hit when known."""
    size = os.fstat(fd).st_size
    expected = index.segments.get(number, 0)
    if size < expected:
        reason = f"segment is {expected - size} bytes shorter than the index says"
        yield LogProblem(path=path, pos=size, feed=None, seq=None, reason=reason)
    for item in scan_segment(fd, 0, size):
        if isinstance(item, Record):
            if item.kind in ENTRY_KINDS and _bad_key(item.payload):
                reason = "entry record does not decode"
                yield LogProblem(path=path, pos=item.pos, feed=None, seq=None, reason=reason)
            continue
        reason = f"{item.reason} ({item.end - item.pos} bytes unreadable)"
        hit = index.slots_between(pack_offset(number, item.pos), pack_offset(number, item.end))
        if not hit:
            feed, seq = _lost_entry(index, fd, item.pos) or (None, None)
            yield LogProblem(path=path, pos=item.pos, feed=feed, seq=seq, reason=reason)
        for feed, seq, offset in hit:
            pos = segment_of(offset)[1]
            yield LogProblem(path=path, pos=pos, feed=feed, seq=seq, reason=reason)


def _lost_entry(index: Index, fd: int, pos: int) -> tuple[FeedId, Seq] | None:
    """The entry a damaged record at ``pos`` held, when its bytes name one the index lacks."""
    # A rebuilt index has no slot for a lost first or latest entry of a feed, but the
    # author and seq near the record's start usually survive a flipped byte. Trust them
    # only for a held feed and a seq the index cannot otherwise account for.
    head = os.pread(fd, HEADER_BYTES + _KEY_BYTES_MAX, pos)
    if len(head) <= HEADER_BYTES or head[HEADER_BYTES - 1] not in ENTRY_KINDS:
        return None
    try:
        feed, seq = entry_key(head[HEADER_BYTES:])
    except DecodeError:
        return None
    fi = index.feeds.get(feed)
    if fi is None or seq < 1:
        return None
    if seq > fi.latest or (seq < fi.first and fi.evict_off == MISSING):
        return feed, seq
    if fi.first <= seq and fi.offsets[seq - fi.first] == MISSING:
        return feed, seq
    return None


def _bad_key(payload: bytes) -> bool:
    try:
        entry_key(payload)
    except DecodeError:
        return True
    return False


def missing_entries(index: Index, path: str) -> Iterator[LogProblem]:
    """Index slots of entries whose records were lost to damage."""
    for feed, fi in index.feeds.items():
        if MISSING in fi.offsets:
            for i, offset in enumerate(fi.offsets):
                if offset == MISSING:
                    reason = "entry lost to a damaged record"
                    yield LogProblem(
                        path=path, pos=None, feed=feed, seq=Seq(fi.first + i), reason=reason
                    )

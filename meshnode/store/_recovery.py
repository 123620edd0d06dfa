"""Opening a flat-file store: epoch, checkpoint check, tail scan, torn-tail cut (see flatfile)."""

from __future__ import annotations

import logging
import os
import re
import zlib
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.store._index import Covered, Index, decode_checkpoint
from meshnode.store._records import Record, scan_segment
from meshnode.store.files import store_error, write_atomically

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.store.files import FileIo

__all__ = ["load_epoch", "recover", "segment_path", "tail_crc"]

log = logging.getLogger(__name__)

_SEGMENT_NAME = re.compile(r"^(\d{8})\.seg$")
_TAIL_CRC_BYTES = 4096


def segment_path(log_dir: Path, number: int) -> Path:
    """Path of segment ``number``."""
    return log_dir / f"{number:08d}.seg"


def tail_crc(path: Path, pos: int) -> int:
    """crc32 of the (at most 4096) bytes of ``path`` before ``pos``."""
    start = max(0, pos - _TAIL_CRC_BYTES)
    with path.open("rb") as f:
        f.seek(start)
        return zlib.crc32(f.read(pos - start))


def load_epoch(path: Path, io: FileIo) -> bytes:
    """The store's EPOCH, written with a new random one when missing or malformed."""
    path = path / "EPOCH"
    try:
        text = path.read_text().strip()
        if len(text) == 16:
            return bytes.fromhex(text)
        log.warning("%s is malformed; starting a new epoch", path)
    except FileNotFoundError:
        pass
    except ValueError:
        log.warning("%s is malformed; starting a new epoch", path)
    epoch = os.urandom(8)
    try:
        write_atomically(path, epoch.hex().encode() + b"\n", io=io)
    except OSError as exc:
        raise store_error(f"cannot write {path}", exc) from exc
    return epoch


def recover(path: Path, epoch: bytes, io: FileIo, checkpoint_bytes: int) -> tuple[Index, int]:
    """Index from the checkpoint plus the log after it; returns it and bytes scanned.

    Without a usable checkpoint, the bytes scanned count as ``checkpoint_bytes`` at least,
    so that the caller writes one at once.
    """
    for tmp in path.glob("*.tmp"):  # of an interrupted checkpoint or EPOCH write
        tmp.unlink()
    log_dir = path / "log"
    numbers = _segment_numbers(log_dir)
    loaded, durable = _load_checkpoint(path, epoch, numbers) if numbers else (None, {})
    if loaded is None:
        index, start = Index(), (numbers[0] if numbers else 0, 0)
    else:
        index, start = loaded[0], (loaded[1].segment, loaded[1].pos)
    scanned = 0
    for number in numbers:
        if number >= start[0]:
            pos = start[1] if number == start[0] else 0
            last = number == numbers[-1]
            kept = durable.get(number, 0)
            scanned += _scan(io, index, segment_path(log_dir, number), number, pos, last, kept)
    if loaded is None:
        scanned = max(scanned, checkpoint_bytes)
    return index, scanned


def _segment_numbers(log_dir: Path) -> list[int]:
    numbers = []
    for child in log_dir.iterdir():
        if child.name.endswith(".tmp"):
            log.warning("removing %s, left by an interrupted compaction", child)
            child.unlink()
        elif match := _SEGMENT_NAME.match(child.name):
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def _load_checkpoint(
    path: Path, epoch: bytes, numbers: list[int]
) -> tuple[tuple[Index, Covered] | None, dict[int, int]]:
    """The checkpoint if it describes the log (else None), and the segment sizes it covered."""
    # Any readable checkpoint of this store, stale or not, tells which bytes were fsynced
    # before it was written: damage in them is never a torn write.
    checkpoint = path / "index.bin"
    durable: dict[int, int] = {}
    try:
        with checkpoint.open("rb") as f:
            their_epoch, covered, index = decode_checkpoint(f)
        if their_epoch == epoch:
            durable = {**index.segments, covered.segment: covered.pos}
        problem = _stale(path / "log", their_epoch != epoch, covered, index, numbers)
    except FileNotFoundError:
        problem = "missing"
    except (OSError, DecodeError) as exc:
        problem = f"unreadable ({exc})"
    if problem:
        log.warning(
            "index checkpoint %s is %s; rebuilding it from the whole log", checkpoint, problem
        )
        return None, durable
    return (index, covered), durable


def _stale(log_dir: Path, foreign: bool, covered: Covered, index: Index, numbers: list[int]) -> str:
    """Why the checkpoint does not describe this log, or '' when it does."""
    if foreign:
        return "from another store"
    if sorted(index.segments) != [n for n in numbers if n <= covered.segment]:
        return "stale (its segments are not the log's)"
    for number, size in index.segments.items():
        actual = segment_path(log_dir, number).stat().st_size
        if actual < size or (actual != size and number != covered.segment):
            return f"stale (segment {number} is {actual} bytes, not {size})"
    if covered.pos != index.segments[covered.segment]:
        return "malformed (covered position is not the segment's end)"
    if tail_crc(segment_path(log_dir, covered.segment), covered.pos) != covered.tail_crc:
        return "stale (the log before its covered position has changed)"
    return ""


def _scan(
    io: FileIo, index: Index, path: Path, number: int, start: int, last: bool, kept: int
) -> int:
    """Apply the records of one segment from ``start``; cut a torn tail if ``last``."""
    # The first ``kept`` bytes were durable once: a bad tail inside them is damage to keep
    # for `check` to name, not a torn write (unless the segment has since lost bytes).
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        kept = kept if size >= kept else 0
        for item in scan_segment(fd, start, size):
            if isinstance(item, Record):
                index.apply(number, item)
                continue
            cut = max(item.pos, kept) if last and item.at_end else size
            if item.pos < cut:
                log.error(
                    "skipping %d damaged bytes at position %d of %s (%s); run meshnode check",
                    min(item.end, cut) - item.pos, item.pos, path, item.reason,
                )  # fmt: skip
            if cut < size:
                io.truncate(fd, cut)
                io.fsync(fd)
                log.warning("cut %d torn bytes at the end of %s", size - cut, path)
                size = cut
    finally:
        os.close(fd)
    index.segments[number] = size
    return size - start

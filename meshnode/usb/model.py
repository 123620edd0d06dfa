"""A USB drive as a sync holds it: its manifest, what opening found wrong, and its segments
read, checked against their listing, and unlisted when they are not what it says.

usb/opening.py opens and repairs a drive, usb/drive.py writes to it; both through
usb/folder.py, which follows no link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from meshnode.codec.bundle import decode_bundle
from meshnode.codec.message import entry_author, entry_seq
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.usb.folder import Folder, NotRegular, TooBig

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from pathlib import Path

    from meshnode.codec.manifest import Manifest, SegmentInfo
    from meshnode.types import FeedId, Seq

__all__ = [
    "DEFAULT_CAP_BYTES",
    "DRIVE_DIR",
    "MANIFEST_NAME",
    "MARGIN_BYTES",
    "MAX_SEGMENT_BODY_BYTES",
    "MAX_SEGMENT_FILES",
    "MAX_SEGMENT_FILE_BYTES",
    "MAX_SEGMENT_NUMBER",
    "OLD_NAME",
    "README_NAME",
    "SEGMENTS_NAME",
    "SEGMENT_BYTES",
    "Drive",
    "DriveError",
    "DriveFull",
    "carried",
    "drop_segment",
    "extend_runs",
    "gone_error",
    "read_segment",
    "segment_entries",
    "unlist",
]

DRIVE_DIR = "meshnode"
SEGMENT_BYTES = 4 << 20  # small enough to read whole on a Pi Zero, and to read ahead
# A segment holds at most SEGMENT_BYTES of entries; lz4 and the header add far less than
# 64 KiB to that, so a larger file (or listing) is not a segment meshnode wrote.
MAX_SEGMENT_FILE_BYTES = SEGMENT_BYTES + (64 << 10)
# Its entries with their length prefixes are at most SEGMENT_BYTES: twice that is a bomb.
MAX_SEGMENT_BODY_BYTES = 2 * SEGMENT_BYTES
# Names looked at in segments/: a FAT32 folder holds at most 65,536, and the manifest
# limit lists far fewer segments; more is not a drive meshnode wrote.
MAX_SEGMENT_FILES = 100_000
MAX_SEGMENT_NUMBER = 9_999_999  # segment names have at most 7 digits (codec/manifest.py)
DEFAULT_CAP_BYTES = 1 << 30
MARGIN_BYTES = 1 << 20  # left free beyond the manifest's room: the filesystem needs some
MANIFEST_NAME, OLD_NAME = "manifest.json", "manifest.old"
SEGMENTS_NAME, README_NAME = "segments", "README.txt"


class DriveError(MeshnodeError):
    """The drive cannot be used: not a meshnode drive, another network, gone, unwritable."""


class DriveFull(DriveError):
    """No room for what was to be written; ``kind`` is "cap" or "disk"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Drive:
    """An opened drive folder: its manifest and what opening found wrong."""

    root: Path  # for messages: its files are reached through ``folder`` only
    network_key: bytes
    manifest: Manifest
    damaged: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)  # links and special files seen
    blocked: str = ""  # why nothing may be written here; "" when it may
    manifest_bytes: int = 0  # size of the manifest as last read or written
    folder: Folder | None = None
    segments: Folder | None = None

    def segment_path(self, name: str) -> Path:
        """Where segment ``name`` lives (to show; the drive's files are opened by fd)."""
        return self.root / SEGMENTS_NAME / name

    def used_bytes(self) -> int:
        """Bytes of the listed segments."""
        return sum(s.size_bytes for s in self.manifest.segments)

    def room(self) -> tuple[int, str]:
        """Bytes that may still be written, and what limits them: "cap" or "disk"."""
        cap_left = self.manifest.cap_bytes - self.used_bytes()
        margin = MARGIN_BYTES + 2 * self.manifest_bytes  # the manifest must fit later
        try:
            free = self.folder.free_bytes() if self.folder is not None else 0
        except OSError as exc:
            raise gone_error(self.root, exc) from exc
        disk_left = free - margin
        if cap_left <= disk_left:
            return max(0, cap_left), "cap"
        return max(0, disk_left), "disk"

    def close(self) -> None:
        """Let go of the drive's folders (a sync does; collection does it otherwise)."""
        for folder in (self.segments, self.folder):
            if folder is not None:
                folder.close()


def carried(manifest: Manifest) -> dict[FeedId, tuple[Seq, Seq]]:
    """The run of each feed the drive carries, over all its segments."""
    runs: dict[FeedId, tuple[Seq, Seq]] = {}
    for segment in manifest.segments:
        extend_runs(runs, segment.feeds)
    return runs


def extend_runs(
    runs: dict[FeedId, tuple[Seq, Seq]], feeds: Mapping[FeedId, tuple[Seq, Seq]]
) -> None:
    for feed, (first, latest) in feeds.items():
        have = runs.get(feed)
        runs[feed] = (first, latest) if have is None else (have[0], max(have[1], latest))


def gone_error(root: Path, exc: OSError) -> DriveError:
    """An I/O error on the drive, as a message that says what to do."""
    if exc.errno == errno.EROFS:
        advice = "the drive is read-only (a write-protect switch, or its filesystem needs a check)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        advice = "no permission: mount the drive so this user may write to it"
    else:
        advice = (
            "the drive was removed or failed. Nothing on this box was harmed; "
            "plug it in again and sync to finish"
        )
    return DriveError(f"{exc.filename or root}: {exc.strerror or exc}: {advice}")


def unlist(
    drive: Drive,
    dropped: Mapping[str, str],
    cut: Mapping[str, Collection[FeedId]] | None = None,
    *,
    delete: bool = False,
) -> None:
    """Unlist the segments ``dropped`` (name -> why; and with ``delete``, delete their
    files), and the feeds ``cut`` (segment name -> feeds) from that segment on; later
    segments stop listing the feeds of either, so each feed's run stays whole. One pass,
    however many."""
    cut = cut or {}
    broken: set[FeedId] = set()
    kept = []
    for s in drive.manifest.segments:
        why = dropped.get(s.name)
        if why is not None:
            drive.damaged.append(f"{s.name}: {why}")
            broken.update(s.feeds)
            continue
        broken.update(cut.get(s.name, ()))
        if broken and any(f in broken for f in s.feeds):
            s = replace(s, feeds={f: run for f, run in s.feeds.items() if f not in broken})
        kept.append(s)
    drive.manifest = replace(drive.manifest, segments=tuple(kept))
    _delete(drive, dropped, repair=delete)


def _delete(drive: Drive, names: Collection[str], *, repair: bool) -> None:
    """Delete dropped segment files (regular ones only: anything else is left alone)."""
    if not repair or drive.segments is None or drive.blocked:
        return
    for name in names:
        with contextlib.suppress(OSError):
            drive.segments.unlink(name)


def drop_segment(drive: Drive, segment: SegmentInfo, why: str, *, delete: bool) -> None:
    """Unlist a damaged segment (and delete it); later segments stop listing its feeds."""
    unlist(drive, {segment.name: why}, delete=delete)


def read_segment(drive: Drive, segment: SegmentInfo) -> bytes:
    """The bytes of ``segment``, checked against its listing.

    Raises:
        DecodeError: the file is not what the manifest lists (missing, cut, changed, or
            not a regular file: then left alone).
        DriveError: the drive is gone.
    """
    if drive.segments is None:
        raise DecodeError("missing")
    try:
        data = drive.segments.read(segment.name, segment.size_bytes)
    except FileNotFoundError:
        raise DecodeError("missing") from None
    except NotRegular as exc:
        raise DecodeError(f"{exc.kind}, left alone") from None
    except TooBig:
        raise DecodeError("changed: longer than the manifest lists") from None
    except OSError as exc:
        raise gone_error(drive.root, exc) from exc
    if len(data) != segment.size_bytes or hashlib.sha256(data).hexdigest() != segment.sha256:
        raise DecodeError("cut or changed: its sha256 does not match the manifest")
    return data


def segment_entries(
    drive: Drive, segment: SegmentInfo, data: bytes, after: Mapping[FeedId, int]
) -> list[bytes]:
    """The entries in ``data`` (read_segment's) of feeds the segment lists and ``after``
    holds, past ``after[feed]`` (the latest the node has: earlier ones it holds already).

    Raises:
        DecodeError: the bundle does not decode, or holds what no bundle of entries does.
    """
    keep: dict[bytes, int] = {f: after[f] for f in segment.feeds if f in after}
    out = []
    for raw in decode_bundle(data, drive.network_key, MAX_SEGMENT_BODY_BYTES, strict=True):
        held = keep.get(entry_author(raw))
        if held is None:
            continue
        try:
            seq = entry_seq(raw)
        except DecodeError:
            seq = held + 1  # malformed: the node's ingest rejects it with its reason
        if seq > held:
            out.append(raw)
    return out

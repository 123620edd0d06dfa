"""The ``meshnode/`` folder of a USB drive: a portable store of signed entries.

Layout (lower-case ASCII names, at most 8.3 long: safe on FAT32 and exFAT)::

    meshnode/README.txt          what this folder is, for whoever finds the drive
    meshnode/manifest.json       what counts on the drive (codec/manifest.py), written last
    meshnode/manifest.old        the manifest before the last sync, in case one is torn
    meshnode/segments/s000001.mnb  bundles of entries (codec/bundle.py), each holding at
                                 most SEGMENT_BYTES of entries: far from FAT32's 4 GiB limit

Writing: every file goes to a temporary name, is fsynced and renamed (``write_atomically``);
the manifest comes last, after the one it replaces is kept as ``manifest.old``. A drive
pulled out mid-write so leaves at worst a temporary file or an unlisted segment.

Opening, with the checks and repairs a drive made by anyone needs, is usb/opening.py's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from meshnode.codec.bundle import encode_bundle
from meshnode.codec.manifest import (
    MAX_MANIFEST_BYTES,
    SegmentInfo,
    decode_manifest,
    encode_manifest,
    segment_name,
)
from meshnode.errors import DecodeError
from meshnode.usb.folder import Folder, NotRegular, TooBig
from meshnode.usb.model import (
    DEFAULT_CAP_BYTES,
    DRIVE_DIR,
    MANIFEST_NAME,
    MARGIN_BYTES,
    MAX_SEGMENT_BODY_BYTES,
    MAX_SEGMENT_FILE_BYTES,
    MAX_SEGMENT_FILES,
    MAX_SEGMENT_NUMBER,
    OLD_NAME,
    README_NAME,
    SEGMENT_BYTES,
    SEGMENTS_NAME,
    Drive,
    DriveError,
    DriveFull,
    carried,
    drop_segment,
    extend_runs,
    gone_error,
    read_segment,
    segment_entries,
    unlist,
)
from meshnode.usb.opening import check_drive

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

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
    "README_TEXT",
    "SEGMENTS_NAME",
    "SEGMENT_BYTES",
    "Drive",
    "DriveError",
    "DriveFull",
    "carried",
    "drop_segment",
    "extend_runs",
    "gone_error",
    "init_drive",
    "lock_drive",
    "open_drive",
    "read_segment",
    "save_drive",
    "segment_entries",
    "unlist",
    "write_atomically",
    "write_file",
    "write_segment",
]

# What a segment's listing adds to the manifest at most: its name, size and sha256, and
# per feed run its id and two seqs (indented JSON).
_LISTING_BYTES, _RUN_BYTES = 256, 128
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
README_TEXT = """\
This folder belongs to meshnode, an offline mesh that shares posts between village boxes.

It carries signed posts between boxes that have no other link. Plug the drive into a
meshnode box and it syncs by itself (or run: meshnode usb sync /path/to/this/drive).
Every post is signed by its author and checked on arrival, so nothing here can be forged
or changed unnoticed. Please do not edit the files in this folder; if the drive is needed
for something else, the whole folder can be deleted.
"""


def init_drive(path: Path, network_key: bytes, cap_bytes: int) -> Drive:
    """Make ``path/meshnode/`` a drive of this network, or set the cap of the one there
    (the drive is returned open: ``close`` it)."""
    root = path / DRIVE_DIR
    if not path.is_dir():
        raise DriveError(f"{path} is not a directory (is the drive mounted?)")
    try:
        root.mkdir()  # the mount point is trusted; what is in it is checked on opening
    except FileExistsError:
        pass
    except OSError as exc:
        raise DriveError(f"cannot make {root}: {exc.strerror or exc}") from exc
    with lock_drive(path):
        drive = open_drive(path, network_key, repair=True)
        try:
            if drive.blocked:
                raise DriveError(drive.blocked)
            drive.manifest = replace(drive.manifest, cap_bytes=cap_bytes)
            save_drive(drive)
        except BaseException:
            drive.close()
            raise
    return drive


def open_drive(path: Path, network_key: bytes, *, repair: bool) -> Drive:
    """Open ``path/meshnode/`` and check it; with ``repair``, fix what can be fixed."""
    drive = check_drive(path, network_key, repair=repair)
    folder = drive.folder
    if repair and not drive.blocked and folder is not None and folder.lstat(README_NAME) is None:
        try:
            write_file(drive, folder, README_NAME, README_TEXT.encode("utf-8"))
        except BaseException:
            drive.close()
            raise
    return drive


@dataclass(frozen=True, slots=True)
class _At:
    """A name in one of the drive's folders."""

    folder: Folder
    name: str

    def __str__(self) -> str:
        return f"{self.folder.shown}/{self.name}"


def write_atomically(at: _At, data: bytes) -> None:
    """Every write to a drive: temporary name, fsync, rename (a seam tests replace)."""
    at.folder.write_atomically(at.name, data)


def write_file(drive: Drive, folder: Folder, name: str, data: bytes) -> None:
    """``write_atomically`` on the drive, its errors mapped: full, or gone."""
    try:
        write_atomically(_At(folder, name), data)
    except NotRegular as exc:
        raise DriveError(f"{folder.shown}/{exc}: nothing was written over it") from exc
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            message = f"the drive is full (writing {name}: {exc.strerror})"
            raise DriveFull(message, "disk") from exc
        raise gone_error(drive.root, exc) from exc


def _free_number(drive: Drive) -> int:
    """The next segment number whose name is free on the drive (unlisted leftovers that
    were left alone keep theirs)."""
    assert drive.segments is not None
    number = drive.manifest.next_segment
    for _ in range(MAX_SEGMENT_FILES + 1):
        if number > MAX_SEGMENT_NUMBER:
            break
        if drive.segments.lstat(segment_name(number)) is None:
            return number
        number += 1
    raise DriveFull("the drive has no segment names left: start it afresh", "cap")


def write_segment(
    drive: Drive, raws: list[bytes], feeds: Mapping[FeedId, tuple[Seq, Seq]]
) -> SegmentInfo:
    """Write ``raws`` (the runs ``feeds``) as the next segment and list it.

    Raises:
        DriveFull: the cap or the filesystem has no room; the drive is as it was.
        DriveError: the drive is gone, or may not be written (``blocked``).
    """
    if drive.blocked or drive.segments is None:
        raise DriveError(drive.blocked or f"{drive.root}: no segments folder")
    try:
        number = _free_number(drive)
    except OSError as exc:
        raise gone_error(drive.root, exc) from exc
    name = segment_name(number)
    data = encode_bundle(drive.network_key, raws)
    room, kind = drive.room()
    if len(data) > room:
        raise DriveFull(f"the drive's {'cap' if kind == 'cap' else 'space'} is used up", kind)
    listing = _LISTING_BYTES + _RUN_BYTES * len(feeds)
    if drive.manifest_bytes + listing > MAX_MANIFEST_BYTES:
        raise DriveFull(
            f"the drive's manifest lists all a box reads ({MAX_MANIFEST_BYTES} bytes of it): "
            "start the drive afresh to carry more",
            "cap",
        )
    write_file(drive, drive.segments, name, data)
    drive.manifest_bytes += listing  # the manifest to save grows by about this much
    info = SegmentInfo(
        name=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), feeds=feeds
    )
    drive.manifest = replace(
        drive.manifest, next_segment=number + 1, segments=(*drive.manifest.segments, info)
    )
    return info


def save_drive(drive: Drive) -> None:
    """Write the manifest last: the one there now is kept as manifest.old first.

    Raises:
        DriveFull, DriveError: it could not be written; the drive keeps its old manifest,
            and the segments written since are adopted at the next sync.
    """
    folder = drive.folder
    if drive.blocked or folder is None:
        raise DriveError(drive.blocked or f"{drive.root}: not open")
    data = _fitted(drive)
    try:
        previous = folder.read(MANIFEST_NAME, MAX_MANIFEST_BYTES)
        decode_manifest(previous)  # a torn one must not replace a good spare
    except (OSError, DecodeError, NotRegular, TooBig):
        previous = b""
    if previous:
        write_file(drive, folder, OLD_NAME, previous)
    write_file(drive, folder, MANIFEST_NAME, data)
    if folder.lstat(README_NAME) is None:
        write_file(drive, folder, README_NAME, README_TEXT.encode("utf-8"))
    drive.manifest_bytes = len(data)


def _fitted(drive: Drive) -> bytes:
    """The manifest's bytes within MAX_MANIFEST_BYTES: the oldest box visits (hints of
    what boxes want) give way first.

    Raises:
        DriveFull: the segments' listing alone is over the limit.
    """
    data = encode_manifest(drive.manifest)
    boxes = drive.manifest.boxes
    if len(data) <= MAX_MANIFEST_BYTES:
        return data
    empty = len(encode_manifest(replace(drive.manifest, segments=(), boxes={})))
    over = len(data) - MAX_MANIFEST_BYTES
    keep = dict(boxes)
    for box in sorted(boxes, key=lambda b: boxes[b].seen_ms):
        if over <= 0:
            break
        one = replace(drive.manifest, segments=(), boxes={box: boxes[box]})
        over -= len(encode_manifest(one)) - empty + 8  # and its share of commas and newlines
        del keep[box]
    drive.manifest = replace(drive.manifest, boxes=keep)
    data = encode_manifest(drive.manifest)
    if len(data) > MAX_MANIFEST_BYTES:
        raise DriveFull(
            f"the drive's manifest would be over {MAX_MANIFEST_BYTES} bytes, the most a box "
            "reads: it lists too many segments; start the drive afresh",
            "cap",
        )
    return data


@contextlib.contextmanager
def lock_drive(path: Path) -> Iterator[None]:
    """Hold the drive for one sync (an flock on its folder); DriveError if one runs."""
    try:
        folder = Folder.open_at(path, DRIVE_DIR)
    except (OSError, NotRegular):
        yield  # no folder (or a link): open_drive says what is wrong
        return
    try:
        if not folder.lock():
            raise DriveError(f"{path}: another sync of this drive is running")
        yield
    finally:
        folder.close()

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

Opening with ``repair`` (what a sync does): a torn ``manifest.json`` gives way to
``manifest.old``; with both torn, the manifest is rebuilt from the segments. A listed
segment that is missing or short is dropped; one with bytes after its listed size whose
listed part checks out has them cut off. An unlisted segment that decodes whole (written
before a manifest that never made it) is adopted; temporary files and anything else
unlisted in ``segments/`` are deleted. A segment's sha256 is checked when it is read; one
that fails is dropped then. When a dropped segment carried a feed, later segments stop
listing that feed (their copies are dead) so the feed's run stays whole and the next box
that holds it carries it again. Entries read from a drive are never trusted: the node
verifies each one. Nothing here touches a node (usb/merge.py merges); no file of another
network is ever changed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from meshnode.codec.bundle import BUNDLE_MAGIC, decode_bundle, encode_bundle
from meshnode.codec.manifest import (
    Manifest,
    SegmentInfo,
    decode_manifest,
    encode_manifest,
    segment_name,
    segment_number,
)
from meshnode.codec.message import MAX_SEQ, entry_author, entry_seq
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.secure.identity import network_tag
from meshnode.store.files import write_atomically
from meshnode.types import FeedId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "DEFAULT_CAP_BYTES",
    "DRIVE_DIR",
    "SEGMENT_BYTES",
    "Drive",
    "DriveError",
    "DriveFull",
    "carried",
    "drop_segment",
    "init_drive",
    "lock_drive",
    "open_drive",
    "read_segment",
    "save_drive",
    "segment_entries",
    "write_segment",
]

DRIVE_DIR = "meshnode"
SEGMENT_BYTES = 4 << 20  # small enough to read whole on a Pi Zero, and to read ahead
DEFAULT_CAP_BYTES = 1 << 30
MARGIN_BYTES = 1 << 20  # left free beyond the manifest's room: the filesystem needs some
_MANIFEST, _OLD, _SEGMENTS, _README = "manifest.json", "manifest.old", "segments", "README.txt"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_README_TEXT = """\
This folder belongs to meshnode, an offline mesh that shares posts between village boxes.

It carries signed posts between boxes that have no other link. Plug the drive into a
meshnode box and it syncs by itself (or run: meshnode usb sync /path/to/this/drive).
Every post is signed by its author and checked on arrival, so nothing here can be forged
or changed unnoticed. Please do not edit the files in this folder; if the drive is needed
for something else, the whole folder can be deleted.
"""


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

    root: Path
    network_key: bytes
    manifest: Manifest
    damaged: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    manifest_bytes: int = 0  # size of the manifest as last read or written

    def segment_path(self, name: str) -> Path:
        """Where segment ``name`` lives."""
        return self.root / _SEGMENTS / name

    def used_bytes(self) -> int:
        """Bytes of the listed segments."""
        return sum(s.size_bytes for s in self.manifest.segments)

    def room(self) -> tuple[int, str]:
        """Bytes that may still be written, and what limits them: "cap" or "disk"."""
        cap_left = self.manifest.cap_bytes - self.used_bytes()
        margin = MARGIN_BYTES + 2 * self.manifest_bytes  # the manifest must fit later
        try:
            disk_left = shutil.disk_usage(self.root).free - margin
        except OSError as exc:
            raise _gone(self.root, exc) from exc
        if cap_left <= disk_left:
            return max(0, cap_left), "cap"
        return max(0, disk_left), "disk"


def carried(manifest: Manifest) -> dict[FeedId, tuple[Seq, Seq]]:
    """The run of each feed the drive carries, over all its segments."""
    runs: dict[FeedId, tuple[Seq, Seq]] = {}
    for segment in manifest.segments:
        for feed, (first, latest) in segment.feeds.items():
            have = runs.get(feed)
            runs[feed] = (first, latest) if have is None else (have[0], max(have[1], latest))
    return runs


def _gone(root: Path, exc: OSError) -> DriveError:
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


def _write(drive_root: Path, path: Path, data: bytes) -> None:
    """``write_atomically`` on the drive, its errors mapped: full, or gone."""
    try:
        write_atomically(path, data)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            message = f"the drive is full (writing {path.name}: {exc.strerror})"
            raise DriveFull(message, "disk") from exc
        raise _gone(drive_root, exc) from exc


# -- init and open -------------------------------------------------------------------


def init_drive(path: Path, network_key: bytes, cap_bytes: int) -> Drive:
    """Make ``path/meshnode/`` a drive of this network, or set the cap of the one there."""
    root = path / DRIVE_DIR
    if not path.is_dir():
        raise DriveError(f"{path} is not a directory (is the drive mounted?)")
    try:
        (root / _SEGMENTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DriveError(f"cannot make {root}: {exc.strerror or exc}") from exc
    with lock_drive(path):
        if any((root / name).exists() for name in (_MANIFEST, _OLD)) or _segment_files(root):
            drive = open_drive(path, network_key, repair=True)
            drive.manifest = replace(drive.manifest, cap_bytes=cap_bytes)
        else:
            manifest = Manifest(network=network_tag(network_key), cap_bytes=cap_bytes)
            drive = Drive(root=root, network_key=network_key, manifest=manifest)
        save_drive(drive)
    return drive


def open_drive(path: Path, network_key: bytes, *, repair: bool) -> Drive:
    """Open ``path/meshnode/`` and check it; with ``repair``, fix what can be fixed."""
    root = path / DRIVE_DIR
    if not root.is_dir():
        raise DriveError(
            f"{path} has no {DRIVE_DIR}/ folder: not a meshnode drive "
            f"(make it one with: meshnode usb init {path})"
        )
    try:
        return _open(root, network_key, repair=repair)
    except OSError as exc:
        raise _gone(root, exc) from exc


def _open(root: Path, network_key: bytes, *, repair: bool) -> Drive:
    tag = network_tag(network_key)
    manifest, size, damaged = _read_manifest(root)
    if manifest is None:
        _refuse_other_networks(root, tag)
        manifest = Manifest(network=tag, cap_bytes=DEFAULT_CAP_BYTES)
        if _segment_files(root):
            damaged.append("manifest: rebuilt from the segments (cap reset, box visits lost)")
    if manifest.network != tag:
        raise DriveError(
            f"{root.parent} carries network {manifest.network}; this node is on network "
            f"{tag}. Its entries would not verify here: use a drive of this network"
        )
    drive = Drive(root, network_key, manifest, damaged=damaged, manifest_bytes=size)
    _check_listed(drive, repair=repair)
    _check_unlisted(drive, repair=repair)
    if repair and not (root / _README).exists():
        _write(root, root / _README, _README_TEXT.encode("utf-8"))
    return drive


def _read_manifest(root: Path) -> tuple[Manifest | None, int, list[str]]:
    """The manifest, else the one before it, else None; with what was wrong on the way."""
    damaged: list[str] = []
    for name in (_MANIFEST, _OLD):
        try:
            data = (root / name).read_bytes()
            return decode_manifest(data), len(data), damaged
        except FileNotFoundError:
            continue
        except DecodeError as exc:
            damaged.append(f"{name}: {exc}")
    return None, 0, damaged


def _refuse_other_networks(root: Path, tag: str) -> None:
    """Before rebuilding a lost manifest: segments of another network are not ours to
    judge (or delete)."""
    for path in _segment_files(root):
        with path.open("rb") as f:
            head = f.read(len(BUNDLE_MAGIC) + 5)
        theirs = head[len(BUNDLE_MAGIC) + 1 :].hex()
        if head.startswith(BUNDLE_MAGIC) and len(theirs) == 8 and theirs != tag:
            raise DriveError(
                f"{root.parent} carries network {theirs} (its manifest is lost); this node "
                f"is on network {tag}: use a drive of this network"
            )


def _segment_files(root: Path) -> list[Path]:
    folder = root / _SEGMENTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if segment_number(p.name) is not None)


def _check_listed(drive: Drive, *, repair: bool) -> None:
    """Drop listed segments that are missing or short; cut garbage off longer ones."""
    for segment in list(drive.manifest.segments):
        path = drive.segment_path(segment.name)
        problem = _size_problem(path, segment, repair=repair)
        if problem:
            drop_segment(drive, segment, problem, delete=repair)


def _size_problem(path: Path, segment: SegmentInfo, *, repair: bool) -> str:
    """Why a listed segment is not whole, or "" (a longer one whose listed part checks
    out is cut back to it)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size < segment.size_bytes:
        return f"cut short ({size} of {segment.size_bytes} bytes)"
    if size > segment.size_bytes:
        try:
            with path.open("rb") as f:
                head = f.read(segment.size_bytes)
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        if hashlib.sha256(head).hexdigest() != segment.sha256:
            return "changed (sha256 does not match)"
        if repair:
            with path.open("r+b") as f:
                f.truncate(segment.size_bytes)
                os.fsync(f.fileno())
    return ""


def _check_unlisted(drive: Drive, *, repair: bool) -> None:
    """Adopt whole unlisted segments (newest last); delete everything else unlisted."""
    folder = drive.root / _SEGMENTS
    if not folder.is_dir():
        if repair:
            folder.mkdir()
        return
    listed = {s.name for s in drive.manifest.segments}
    # Only numbers the manifest never gave out can be a sync's work it did not record; an
    # older unlisted one was dropped on purpose.
    floor = drive.manifest.next_segment
    for path in sorted(folder.iterdir(), key=lambda p: (segment_number(p.name) or 0, p.name)):
        if path.name in listed:
            continue
        if (segment_number(path.name) or 0) >= floor and _adopt(drive, path):
            continue
        drive.cleaned.append(path.name)
        if repair:
            with contextlib.suppress(OSError):
                path.unlink()


def _adopt(drive: Drive, path: Path) -> bool:
    """List an unlisted segment that decodes whole; its runs that do not continue what
    the drive carries are left unlisted."""
    try:
        data = path.read_bytes()
        raws = list(decode_bundle(data, drive.network_key, 2 * SEGMENT_BYTES))
        runs = _runs(raws)
    except (DecodeError, IsADirectoryError, PermissionError):
        return False
    have = carried(drive.manifest)
    feeds = {
        feed: (first, latest)
        for feed, (first, latest) in runs.items()
        if feed not in have or have[feed][0] <= first <= have[feed][1] + 1 < latest + 1
    }
    info = SegmentInfo(
        name=path.name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), feeds=feeds
    )
    number = segment_number(path.name) or 0
    drive.manifest = replace(
        drive.manifest,
        next_segment=max(drive.manifest.next_segment, number + 1),
        segments=(*drive.manifest.segments, info),
    )
    drive.adopted.append(path.name)
    return True


def _runs(raws: list[bytes]) -> dict[FeedId, tuple[Seq, Seq]]:
    """The run of each feed in ``raws`` (DecodeError if one feed's seqs are not one run)."""
    runs: dict[FeedId, tuple[Seq, Seq]] = {}
    for raw in raws:
        author = entry_author(raw)
        seq = entry_seq(raw)
        if not 1 <= seq <= MAX_SEQ:
            raise DecodeError(f"seq {seq} is out of range")
        run = runs.get(author)
        if run is not None and seq != run[1] + 1:
            raise DecodeError("a feed's entries are not one run")
        runs[author] = (run[0] if run else Seq(seq), Seq(seq))
    return runs


def drop_segment(drive: Drive, segment: SegmentInfo, why: str, *, delete: bool) -> None:
    """Unlist a damaged segment (and delete it); later segments stop listing its feeds."""
    drive.damaged.append(f"{segment.name}: {why}")
    segments = list(drive.manifest.segments)
    at = segments.index(segment)
    broken = set(segment.feeds)
    later = [
        replace(s, feeds={f: run for f, run in s.feeds.items() if f not in broken})
        for s in segments[at + 1 :]
    ]
    drive.manifest = replace(drive.manifest, segments=(*segments[:at], *later))
    if delete:
        with contextlib.suppress(OSError):
            drive.segment_path(segment.name).unlink()


# -- read, write, save -----------------------------------------------------------------


def read_segment(drive: Drive, segment: SegmentInfo) -> bytes:
    """The bytes of ``segment``, checked against its listing.

    Raises:
        DecodeError: the file is not what the manifest lists (missing, cut, changed).
        DriveError: the drive is gone.
    """
    path = drive.segment_path(segment.name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DecodeError("missing") from None
    except OSError as exc:
        raise _gone(drive.root, exc) from exc
    if len(data) != segment.size_bytes or hashlib.sha256(data).hexdigest() != segment.sha256:
        raise DecodeError("cut or changed: its sha256 does not match the manifest")
    return data


def segment_entries(
    drive: Drive, segment: SegmentInfo, data: bytes, after: Mapping[FeedId, int]
) -> list[bytes]:
    """The entries in ``data`` (read_segment's) of feeds the segment lists and ``after``
    holds, past ``after[feed]`` (the latest the node has: earlier ones it holds already).

    Raises:
        DecodeError: the bundle does not decode.
    """
    keep: dict[bytes, int] = {f: after[f] for f in segment.feeds if f in after}
    out = []
    for raw in decode_bundle(data, drive.network_key, 2 * SEGMENT_BYTES):
        try:
            held = keep.get(entry_author(raw))
        except DecodeError:
            continue  # too short to be anyone's: nothing to take
        if held is None:
            continue
        try:
            seq = entry_seq(raw)
        except DecodeError:
            seq = held + 1  # malformed: the node's ingest rejects it with its reason
        if seq > held:
            out.append(raw)
    return out


def write_segment(
    drive: Drive, raws: list[bytes], feeds: Mapping[FeedId, tuple[Seq, Seq]]
) -> SegmentInfo:
    """Write ``raws`` (the runs ``feeds``) as the next segment and list it.

    Raises:
        DriveFull: the cap or the filesystem has no room; the drive is as it was.
        DriveError: the drive is gone.
    """
    name = segment_name(drive.manifest.next_segment)
    data = encode_bundle(drive.network_key, raws)
    room, kind = drive.room()
    if len(data) > room:
        raise DriveFull(f"the drive's {'cap' if kind == 'cap' else 'space'} is used up", kind)
    _write(drive.root, drive.segment_path(name), data)
    info = SegmentInfo(
        name=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), feeds=feeds
    )
    drive.manifest = replace(
        drive.manifest,
        next_segment=drive.manifest.next_segment + 1,
        segments=(*drive.manifest.segments, info),
    )
    return info


def save_drive(drive: Drive) -> None:
    """Write the manifest last: the one there now is kept as manifest.old first.

    Raises:
        DriveFull, DriveError: it could not be written; the drive keeps its old manifest,
            and the segments written since are adopted at the next sync.
    """
    data = encode_manifest(drive.manifest)
    current = drive.root / _MANIFEST
    try:
        previous = current.read_bytes()
        decode_manifest(previous)  # a torn one must not replace a good spare
    except (OSError, DecodeError):
        previous = b""
    if previous:
        _write(drive.root, drive.root / _OLD, previous)
    _write(drive.root, current, data)
    if not (drive.root / _README).exists():
        _write(drive.root, drive.root / _README, _README_TEXT.encode("utf-8"))
    drive.manifest_bytes = len(data)


@contextlib.contextmanager
def lock_drive(path: Path) -> Iterator[None]:
    """Hold the drive for one sync (an flock on its folder); DriveError if one runs."""
    try:
        fd = os.open(path / DRIVE_DIR, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fd = -1  # no folder: open_drive says what is wrong
    if fd < 0:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DriveError(f"{path}: another sync of this drive is running") from None
        except OSError:
            pass  # a filesystem without locks: one sync at a time is then up to the user
        yield
    finally:
        os.close(fd)

"""Opening a USB drive's ``meshnode/`` folder: check it, repair it, leave alone what is not ours.

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

A drive is a stranger's: only regular files proved to be inside ``meshnode/`` are read,
written, cut or deleted, every name taken relative to a directory fd with no link followed
(usb/folder.py). Anything else (a link, FIFO, socket, device, or a folder where a file
should be) is reported in ``left_alone`` and left as it is; when it stands where the
manifest or segments must be written, nothing is written (``blocked``). Every size is
checked before it is read (MAX_MANIFEST_BYTES, MAX_SEGMENT_FILE_BYTES), a listing that
claims more entries than its bytes can hold is dropped unread, and ``next_segment`` is a
hint: numbering goes on after the last segment there.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
from dataclasses import replace
from typing import TYPE_CHECKING

from meshnode.codec.bundle import BUNDLE_MAGIC, decode_bundle, max_records
from meshnode.codec.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    SegmentInfo,
    decode_manifest,
    segment_name,
    segment_number,
)
from meshnode.codec.message import MAX_SEQ, entry_author, entry_seq
from meshnode.errors import DecodeError
from meshnode.secure.identity import network_tag
from meshnode.types import FeedId, Seq
from meshnode.usb.folder import Folder, NotRegular, TooBig, kind_of
from meshnode.usb.model import (
    DEFAULT_CAP_BYTES,
    DRIVE_DIR,
    MANIFEST_NAME,
    MAX_SEGMENT_BODY_BYTES,
    MAX_SEGMENT_FILE_BYTES,
    MAX_SEGMENT_FILES,
    MAX_SEGMENT_NUMBER,
    OLD_NAME,
    README_NAME,
    SEGMENTS_NAME,
    Drive,
    DriveError,
    carried,
    extend_runs,
    gone_error,
    unlist,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["check_drive"]


def _leave(drive: Drive, where: str, kind: str) -> None:
    """Note a link or special file that is left alone."""
    drive.left_alone.append(f"{where}: {kind}")


def _open_root(path: Path) -> Folder:
    """The drive's ``meshnode/`` folder, which must be a folder and no link."""
    root = path / DRIVE_DIR
    try:
        return Folder.open_at(path, DRIVE_DIR)
    except NotRegular as exc:
        if exc.kind == "a symbolic link":
            raise DriveError(
                f"{root} is a symbolic link: meshnode follows no links on a drive and leaves "
                "this one alone (delete the link to use the drive)"
            ) from None
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise gone_error(root, exc) from exc
    raise DriveError(
        f"{path} has no {DRIVE_DIR}/ folder: not a meshnode drive "
        f"(make it one with: meshnode usb init {path})"
    )


def check_drive(path: Path, network_key: bytes, *, repair: bool) -> Drive:
    """Open ``path/meshnode/`` and check it; with ``repair``, fix what can be fixed (cut,
    delete, adopt: never write a file, which usb/drive.py does)."""
    folder = _open_root(path)
    root = path / DRIVE_DIR
    manifest = Manifest(network=network_tag(network_key), cap_bytes=DEFAULT_CAP_BYTES)
    drive = Drive(root, network_key, manifest, folder=folder)
    try:
        _check(drive, repair=repair)
    except OSError as exc:
        drive.close()
        raise gone_error(root, exc) from exc
    except BaseException:
        drive.close()
        raise
    return drive


def _check(drive: Drive, *, repair: bool) -> None:
    tag = drive.manifest.network
    _check_kinds(drive, repair=repair)
    repair = repair and not drive.blocked
    listing = _segment_names(drive)
    manifest, drive.manifest_bytes = _read_manifest(drive)
    if manifest is None:
        _refuse_other_networks(drive, listing, tag)
        if any(segment_number(name) is not None for name, _ in listing):
            drive.damaged.append("manifest: rebuilt from the segments (cap reset, box visits lost)")
    elif manifest.network != tag:
        raise DriveError(
            f"{drive.root.parent} carries network {manifest.network}; this node is on network "
            f"{tag}. Its entries would not verify here: use a drive of this network"
        )
    else:
        drive.manifest = manifest
    _check_claims(drive, repair=repair)
    _check_listed(drive, repair=repair)
    _check_unlisted(drive, listing, repair=repair)


def _check_kinds(drive: Drive, *, repair: bool) -> None:
    """The fixed names must be a file (or, ``segments``, a folder): anything else is left
    alone, and where the sync must write it blocks writing."""
    folder = drive.folder
    assert folder is not None
    for name, want in (
        (MANIFEST_NAME, stat.S_ISREG),
        (OLD_NAME, stat.S_ISREG),
        (SEGMENTS_NAME, stat.S_ISDIR),
    ):
        st = folder.lstat(name)
        if st is not None and not want(st.st_mode):
            kind = kind_of(st.st_mode)
            _leave(drive, f"{DRIVE_DIR}/{name}", kind)
            drive.blocked = drive.blocked or (
                f"{drive.root / name} is {kind}: meshnode leaves it alone and so writes nothing "
                f"to this drive (delete it, or the whole {DRIVE_DIR}/ folder, to sync)"
            )
    readme = folder.lstat(README_NAME)
    if readme is not None and not stat.S_ISREG(readme.st_mode):
        _leave(drive, f"{DRIVE_DIR}/{README_NAME}", kind_of(readme.st_mode))
    if repair and not drive.blocked:
        folder.mkdir(SEGMENTS_NAME)
    try:
        drive.segments = Folder.open_at(folder, SEGMENTS_NAME)
    except (NotRegular, FileNotFoundError):
        drive.segments = None


def _segment_names(drive: Drive) -> list[tuple[str, bool]]:
    """(name, is a regular file) in segments/, at most MAX_SEGMENT_FILES of them."""
    if drive.segments is None:
        return []
    names, whole = drive.segments.names(MAX_SEGMENT_FILES)
    if not whole:
        drive.damaged.append(
            f"segments: holds more than {MAX_SEGMENT_FILES} names; the rest were not looked at"
        )
    return names


def _read_manifest(drive: Drive) -> tuple[Manifest | None, int]:
    """The manifest, else the one before it, else None; what was wrong goes in damaged."""
    assert drive.folder is not None
    for name in (MANIFEST_NAME, OLD_NAME):
        try:
            data = drive.folder.read(name, MAX_MANIFEST_BYTES)
            return decode_manifest(data), len(data)
        except (FileNotFoundError, NotRegular):
            continue  # a link or special file is already in left_alone
        except TooBig:
            drive.damaged.append(f"{name}: over the {MAX_MANIFEST_BYTES} bytes a manifest takes")
        except DecodeError as exc:
            drive.damaged.append(f"{name}: {exc}")
    return None, 0


def _refuse_other_networks(drive: Drive, listing: list[tuple[str, bool]], tag: str) -> None:
    """Before rebuilding a lost manifest: segments of another network are not ours to
    judge (or delete)."""
    for name, regular in listing:
        if not regular or segment_number(name) is None or drive.segments is None:
            continue
        try:
            head = drive.segments.read_head(name, len(BUNDLE_MAGIC) + 5)
        except (NotRegular, FileNotFoundError):
            continue
        theirs = head[len(BUNDLE_MAGIC) + 1 :].hex()
        if head.startswith(BUNDLE_MAGIC) and len(theirs) == 8 and theirs != tag:
            raise DriveError(
                f"{drive.root.parent} carries network {theirs} (its manifest is lost); this "
                f"node is on network {tag}: use a drive of this network"
            )


def _check_claims(drive: Drive, *, repair: bool) -> None:
    """Listings no segment could hold are dropped unread; ``next_segment`` is a hint."""
    manifest = drive.manifest
    drops = {}
    for s in manifest.segments:
        if s.size_bytes > MAX_SEGMENT_FILE_BYTES:
            drops[s.name] = f"listed at {s.size_bytes} bytes, more than a segment takes"
        elif s.entries() > max_records(s.size_bytes):
            drops[s.name] = f"lists {s.entries()} entries, more than its {s.size_bytes} bytes hold"
    if drops:
        unlist(drive, drops, delete=repair)
    last = max((segment_number(s.name) or 0 for s in drive.manifest.segments), default=0)
    claimed = drive.manifest.next_segment
    if claimed > MAX_SEGMENT_NUMBER:
        drive.damaged.append(
            f"manifest: next_segment {claimed} is past the last segment name; numbering "
            f"goes on after {segment_name(last) if last else 'none'}"
        )
        claimed = 0
    drive.manifest = replace(drive.manifest, next_segment=max(claimed, last + 1))


def _check_listed(drive: Drive, *, repair: bool) -> None:
    """Drop listed segments that are missing or short; cut garbage off longer ones."""
    drops = {}
    for segment in drive.manifest.segments:
        problem = _size_problem(drive, segment, repair=repair)
        if problem:
            drops[segment.name] = problem
    if drops:
        unlist(drive, drops, delete=repair)


def _size_problem(drive: Drive, segment: SegmentInfo, *, repair: bool) -> str:
    """Why a listed segment is not whole, or "" (a longer one whose listed part checks
    out is cut back to it)."""
    folder, name = drive.segments, segment.name
    st = folder.lstat(name) if folder is not None else None
    if folder is None or st is None:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        _leave(drive, f"segments/{name}", kind_of(st.st_mode))
        return f"{kind_of(st.st_mode)}, left alone"
    if st.st_size < segment.size_bytes:
        return f"cut short ({st.st_size} of {segment.size_bytes} bytes)"
    if st.st_size > segment.size_bytes:
        try:
            head = folder.read_head(name, segment.size_bytes)
            if hashlib.sha256(head).hexdigest() != segment.sha256:
                return "changed (sha256 does not match)"
            if repair:
                folder.truncate(name, segment.size_bytes)
        except NotRegular as exc:
            _leave(drive, f"segments/{name}", exc.kind)
            return f"{exc.kind}, left alone"
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
    return ""


def _check_unlisted(drive: Drive, listing: list[tuple[str, bool]], *, repair: bool) -> None:
    """Adopt whole unlisted segments (newest last); delete every other unlisted file."""
    folder = drive.segments
    if folder is None:
        return
    listed = {s.name for s in drive.manifest.segments}
    # Only numbers the manifest never gave out can be a sync's work it did not record; an
    # older unlisted one was dropped on purpose.
    floor = drive.manifest.next_segment
    have = carried(drive.manifest)
    adopted = []
    for number, name, regular in sorted(
        (segment_number(n) or 0, n, regular) for n, regular in listing if n not in listed
    ):
        if not regular:
            st = folder.lstat(name)
            if st is not None and not stat.S_ISREG(st.st_mode):
                _leave(drive, f"segments/{name}", kind_of(st.st_mode))
            continue
        if number >= floor and (info := _adopt(drive, folder, name, have)) is not None:
            adopted.append(info)
            continue
        drive.cleaned.append(name)
        if repair:
            with contextlib.suppress(OSError):
                folder.unlink(name)
    if adopted:
        last = segment_number(adopted[-1].name) or 0
        drive.manifest = replace(
            drive.manifest,
            next_segment=max(drive.manifest.next_segment, last + 1),
            segments=(*drive.manifest.segments, *adopted),
        )


def _adopt(
    drive: Drive, folder: Folder, name: str, have: dict[FeedId, tuple[Seq, Seq]]
) -> SegmentInfo | None:
    """The listing of an unlisted segment that decodes whole; its runs that do not
    continue what the drive carries (``have``, extended here) are left unlisted."""
    try:
        data = folder.read(name, MAX_SEGMENT_FILE_BYTES)
        raws = list(decode_bundle(data, drive.network_key, MAX_SEGMENT_BODY_BYTES, strict=True))
        runs = _runs(raws)
    except (DecodeError, NotRegular, TooBig, PermissionError):
        return None
    feeds = {
        feed: (first, latest)
        for feed, (first, latest) in runs.items()
        if feed not in have or have[feed][0] <= first <= have[feed][1] + 1 < latest + 1
    }
    extend_runs(have, feeds)
    drive.adopted.append(name)
    sha = hashlib.sha256(data).hexdigest()
    return SegmentInfo(name=name, size_bytes=len(data), sha256=sha, feeds=feeds)


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

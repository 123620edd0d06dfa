"""A portable store on a USB drive, and the two-way merge with a node (``meshnode usb``).

Layout under ``PATH/meshnode/`` (lower-case ASCII names, safe on FAT32 and exFAT)::

    README.txt           what this folder is, for whoever finds the drive
    manifest.json        written last; lists everything that counts (below)
    manifest.old         the manifest before the last change, in case one is torn
    segments/sNNNNNN.mnb bundles of signed entries (codec/bundle.py), each under
                         SEGMENT_BYTES of entries, far from FAT32's 4 GiB file limit

``manifest.json`` is JSON::

    {"format": "meshnode-drive", "version": 1, "network": "<tag hex>", "cap_bytes": N,
     "next": N,
     "segments": [{"name": "s000001.mnb", "bytes": N, "sha256": "<hex>", "entries": N}],
     "carried": {"<feed id>": [first, latest]},
     "boxes": {"<feed id>": {"seen_ms": N, "clock": {"<feed id>": latest}}},
     "sha256": "<hex of the rest, as compact JSON with sorted keys>"}

``carried`` is the range of each feed the segments hold; ``boxes`` records, for each box
that synced the drive, when it last did and its clock: the latest seq it held of every feed
it wants, so the next box knows what to carry back to it.

Writes: each new segment goes to a temporary name, is fsynced and renamed; the manifest is
written last the same way, after the old one is kept as ``manifest.old``. Reading: a
manifest whose sha256 does not match is torn, and ``manifest.old`` serves; with neither,
a manifest is rebuilt from the segments. A segment whose size or sha256 does not match
its listing (cut, or changed) is reported and dropped, its entries carried again by the
next box that holds them. An unlisted segment that decodes whole (written just before a
manifest that never made it) is adopted; temporary files and anything else unlisted are
deleted. So a drive pulled out mid-write, any file cut at any byte or with garbage at the
end, is repaired or skipped at the next sync. Entries read from a drive are verified like
any received entry; nothing on it is trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.codec.bundle import decode_bundle, encode_bundle
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.identity import format_feed_id, network_tag
from meshnode.importer import ImportTally, ingest_all, write_atomically
from meshnode.types import Seq

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from meshnode.node import Node
    from meshnode.types import FeedId

__all__ = [
    "DEFAULT_CAP_BYTES",
    "DRIVE_DIR",
    "SEGMENT_BYTES",
    "Drive",
    "DriveError",
    "SyncReport",
    "drive_status",
    "init_drive",
    "open_drive",
    "sync_drive",
    "sync_stream",
]

Step = dict[str, object]  # progress: {"phase": "from drive" | "to drive", "done", "total"}
DRIVE_DIR = "meshnode"
FORMAT = "meshnode-drive"
VERSION = 1
SEGMENT_BYTES = 64 << 20
DEFAULT_CAP_BYTES = 1 << 30
MARGIN_BYTES = 1 << 20  # left free on the drive: the manifest and the filesystem need room
_MANIFEST, _OLD, _SEGMENTS = "manifest.json", "manifest.old", "segments"
_SEGMENT_NAME = re.compile(r"s\d{6}\.mnb")
_README = """\
This folder belongs to meshnode, an offline mesh for sharing posts between village boxes.

It carries signed posts between boxes that have no other link. Plug the drive into a
meshnode box and it syncs by itself (or run: meshnode usb sync /path/to/this/drive).
Every post is signed by its author and checked on arrival, so nothing here can be forged
or changed unnoticed. Please do not edit or delete the files in this folder; if the drive
is needed for something else, the folder can be deleted whole.
"""


class DriveError(MeshnodeError):
    """The drive cannot be used: not initialised, another network, unreadable."""


@dataclass(slots=True)
class SyncReport:
    """What one sync did, both ways."""

    from_drive: ImportTally = field(default_factory=ImportTally)
    read_entries: int = 0
    read_bytes: int = 0
    to_drive: int = 0
    to_drive_bytes: int = 0
    left_behind: int = 0  # entries the drive lacked that did not fit
    full: str = ""  # why writing stopped early, if it did
    damaged: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    free_bytes: int = 0
    cap_bytes: int = 0
    used_bytes: int = 0

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "from_drive": self.from_drive.added,
            "to_drive": self.to_drive,
            "rejected": self.from_drive.rejected,
            "from_drive_detail": self.from_drive.to_json(),
            "read_entries": self.read_entries,
            "read_bytes": self.read_bytes,
            "to_drive_bytes": self.to_drive_bytes,
            "left_behind": self.left_behind,
            "full": self.full or None,
            "damaged": self.damaged,
            "cleaned": self.cleaned,
            "used_bytes": self.used_bytes,
            "cap_bytes": self.cap_bytes,
            "free_bytes": self.free_bytes,
        }


@dataclass(slots=True)
class Drive:
    """An opened drive folder and its manifest (already checked)."""

    root: Path
    manifest: dict[str, object]
    damaged: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)

    @property
    def segments(self) -> list[dict[str, object]]:
        """The listed segments that check out."""
        segments = self.manifest["segments"]
        assert isinstance(segments, list)
        return segments

    @property
    def carried(self) -> dict[str, list[int]]:
        """Feed id -> [first, latest] held in the segments."""
        carried = self.manifest["carried"]
        assert isinstance(carried, dict)
        return carried

    @property
    def boxes(self) -> dict[str, dict[str, object]]:
        """Box feed id -> {"seen_ms", "clock"}."""
        boxes = self.manifest["boxes"]
        assert isinstance(boxes, dict)
        return boxes

    @property
    def cap_bytes(self) -> int:
        """Most bytes of segments this drive takes."""
        return int(str(self.manifest["cap_bytes"]))

    def used_bytes(self) -> int:
        """Bytes of the listed segments."""
        return sum(int(str(s["bytes"])) for s in self.segments)

    def free_bytes(self) -> int:
        """Room left: the cap and the filesystem's free space, less a margin."""
        disk = shutil.disk_usage(self.root).free - MARGIN_BYTES
        return max(0, min(self.cap_bytes - self.used_bytes(), disk))

    def read_segment(self, segment: dict[str, object], network_key: bytes) -> list[bytes]:
        """The raw entries of one listed segment (DecodeError when it is damaged)."""
        data = (self.root / _SEGMENTS / str(segment["name"])).read_bytes()
        if hashlib.sha256(data).hexdigest() != segment["sha256"]:
            raise DecodeError("its sha256 does not match the manifest")
        return list(decode_bundle(data, network_key))

    def save(self) -> None:
        """Write the manifest last (the old one kept as manifest.old)."""
        current = self.root / _MANIFEST
        if current.exists():
            write_atomically(self.root / _OLD, current.read_bytes())
        self.manifest.pop("sha256", None)
        self.manifest["sha256"] = _digest(self.manifest)
        text = json.dumps(self.manifest, indent=1, sort_keys=True) + "\n"
        write_atomically(current, text.encode("utf-8"))


def _digest(manifest: dict[str, object]) -> str:
    """sha256 of the manifest without its own ``sha256`` key, in one canonical form."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def init_drive(path: Path, network_key: bytes, cap_bytes: int) -> Drive:
    """Make ``path/meshnode/`` a drive of this network (DriveError if it is another's)."""
    root = path / DRIVE_DIR
    if (root / _MANIFEST).exists() or (root / _OLD).exists():
        drive = open_drive(path, network_key)
        drive.manifest["cap_bytes"] = cap_bytes
        drive.save()
        return drive
    if not path.is_dir():
        raise DriveError(f"{path} is not a directory (is the drive mounted?)")
    (root / _SEGMENTS).mkdir(parents=True, exist_ok=True)
    write_atomically(root / "README.txt", _README.encode("utf-8"))
    drive = Drive(root=root, manifest=_fresh_manifest(network_tag(network_key), cap_bytes))
    drive.save()
    return drive


def _fresh_manifest(tag: str, cap_bytes: int) -> dict[str, object]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "network": tag,
        "cap_bytes": cap_bytes,
        "next": 1,
        "segments": [],
        "carried": {},
        "boxes": {},
    }


def open_drive(path: Path, network_key: bytes) -> Drive:
    """Open and check ``path/meshnode/``: manifest, network, every listed segment."""
    root = path / DRIVE_DIR
    if not root.is_dir():
        raise DriveError(
            f"{path} has no {DRIVE_DIR}/ folder: not a meshnode drive "
            f"(make it one with: meshnode usb init {path})"
        )
    manifest, damaged = _read_manifest(root)
    tag = network_tag(network_key)
    if manifest is None:  # both manifests torn: start one from what the segments hold
        manifest = _fresh_manifest(tag, DEFAULT_CAP_BYTES)
        damaged.append("manifest rebuilt from the segments (cap reset, box visits lost)")
    if manifest["network"] != tag:
        raise DriveError(
            f"{path} carries network {manifest['network']}; this node is on network {tag}. "
            "Its entries would not verify here: use a drive of this network"
        )
    drive = Drive(root=root, manifest=manifest, damaged=damaged)
    _check_segments(drive, network_key)
    return drive


def _read_manifest(root: Path) -> tuple[dict[str, object] | None, list[str]]:
    """The manifest, else the one before it, else None; with what was wrong on the way."""
    damaged = []
    for name in (_MANIFEST, _OLD):
        try:
            manifest = json.loads((root / name).read_text(encoding="utf-8"))
            _validate(manifest)
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError, OSError) as exc:
            damaged.append(f"{name}: unreadable ({exc})")
            continue
        return manifest, damaged
    return None, damaged


def _validate(manifest: object) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError("not a meshnode drive manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"version {manifest.get('version')} is not supported (expected 1)")
    for key, kind in (("segments", list), ("carried", dict), ("boxes", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{key} is not a {kind.__name__}")
    int(manifest["cap_bytes"])
    int(manifest["next"])
    str(manifest["network"])
    if manifest.get("sha256") != _digest(manifest):
        raise ValueError("its sha256 does not match its content (cut or changed)")


def _check_segments(drive: Drive, network_key: bytes) -> None:
    """Drop listed segments that are missing or the wrong size; adopt unlisted ones that
    are whole (written before a manifest that never made it); delete everything else."""
    folder = drive.root / _SEGMENTS
    folder.mkdir(exist_ok=True)
    good, bad = [], set()
    for segment in drive.segments:
        path = folder / str(segment.get("name", ""))
        if _whole(path, segment):
            good.append(segment)
        else:
            bad.add(path.name)
            state = "missing" if not path.exists() else "cut or changed"
            drive.damaged.append(f"{path.name}: {state}")
    drive.manifest["segments"] = good
    listed = {str(s["name"]) for s in good}
    for path in sorted(folder.iterdir()):
        if path.name in listed:
            continue
        adopted = (
            path.name not in bad
            and _SEGMENT_NAME.fullmatch(path.name)
            and _adopt(drive, path, network_key)
        )
        if not adopted:
            with contextlib.suppress(OSError):
                path.unlink()
                drive.cleaned.append(path.name)
    drive.segments.sort(key=lambda s: str(s["name"]))  # the order they were written in


def _whole(path: Path, segment: dict[str, object]) -> bool:
    """The listed size, or longer with the listed content first (then cut back to it)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    listed = int(str(segment.get("bytes")))
    if size == listed:
        return True
    if size < listed:
        return False
    with path.open("rb") as f:
        head = f.read(listed)
    if hashlib.sha256(head).hexdigest() != segment.get("sha256"):
        return False
    with path.open("r+b") as f:  # garbage after a whole segment: cut it off
        f.truncate(listed)
    return True


def _adopt(drive: Drive, path: Path, network_key: bytes) -> bool:
    try:
        data = path.read_bytes()
        entries = sum(1 for _ in decode_bundle(data, network_key))
    except (OSError, DecodeError):
        return False
    drive.segments.append(
        {
            "name": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "entries": entries,
        }
    )
    number = int(path.name[1:7])
    drive.manifest["next"] = max(int(str(drive.manifest["next"])), number + 1)
    drive.adopted.append(path.name)
    return True


def _drop(drive: Drive, segment: dict[str, object], why: str) -> None:
    """Unlist a damaged segment and delete it (so it is never adopted back)."""
    drive.segments.remove(segment)
    drive.damaged.append(f"{segment['name']}: {why}")
    with contextlib.suppress(OSError):
        (drive.root / _SEGMENTS / str(segment["name"])).unlink()


# -- the merge -------------------------------------------------------------------------


def sync_drive(
    node: Node, drive: Drive, *, now_ms: int | None = None
) -> Iterator[Step | SyncReport]:
    """Merge both ways; yield progress Steps as it goes, then the SyncReport.

    Drive to node first (every wanted entry, verified), then node to drive (what the drive
    lacks, most wanted first, within its cap and free space), then this box's clock. The
    manifest is saved once, at the end; a full drive stops the writing cleanly.
    """
    report = SyncReport(damaged=drive.damaged, cleaned=drive.cleaned)
    yield from _from_drive(node, drive, report)
    yield from _to_drive(node, drive, report)
    drive.boxes[format_feed_id(node.feed_id)] = {
        "seen_ms": int(time.time() * 1000) if now_ms is None else now_ms,
        "clock": {format_feed_id(f): node.store.latest_seq(f) for f in node.replicated()},
    }
    if report.damaged or drive.adopted:
        _recount_carried(node, drive)
    drive.save()
    report.used_bytes = drive.used_bytes()
    report.cap_bytes = drive.cap_bytes
    report.free_bytes = drive.free_bytes()
    yield report


def _from_drive(node: Node, drive: Drive, report: SyncReport) -> Iterator[Step]:
    total = sum(int(str(s["entries"])) for s in drive.segments)
    for segment in list(drive.segments):
        try:
            raws = drive.read_segment(segment, node.network_key)
        except (DecodeError, OSError) as exc:
            _drop(drive, segment, f"unreadable ({exc})")
            continue
        report.read_bytes += int(str(segment["bytes"]))
        base = report.read_entries
        for done in ingest_all(node, raws, report.from_drive):
            yield {"phase": "from drive", "done": base + done, "total": total}
        report.read_entries += len(raws)


def _recount_carried(node: Node, drive: Drive) -> None:
    """After dropping damaged segments, what is carried is what the rest hold."""
    carried: dict[str, list[int]] = {}
    for segment in drive.segments:
        for feed, (first, latest) in _ranges(node, drive.read_segment(segment, node.network_key)):
            have = carried.setdefault(feed, [first, latest])
            have[0], have[1] = min(have[0], first), max(have[1], latest)
    drive.manifest["carried"] = carried


def _ranges(node: Node, raws: list[bytes]) -> Iterator[tuple[str, tuple[int, int]]]:
    from meshnode.codec.message import decode_entry

    span: dict[str, tuple[int, int]] = {}
    for raw in raws:
        with contextlib.suppress(DecodeError):
            entry = decode_entry(raw, max_content_bytes=node.max_content_bytes)
            feed = format_feed_id(entry.author)
            first, latest = span.get(feed, (entry.seq, entry.seq))
            span[feed] = (min(first, entry.seq), max(latest, entry.seq))
    yield from span.items()


def _to_drive(node: Node, drive: Drive, report: SyncReport) -> Iterator[Step]:
    plan = _plan(node, drive)
    total = sum(latest - first + 1 for _, first, latest in plan)
    room = drive.free_bytes()
    batch: list[tuple[FeedId, int, bytes]] = []
    batch_bytes = 0
    for feed, first, latest in plan:
        for seq in range(first, latest + 1):
            raw = node.store.get(feed, Seq(seq))
            size = len(raw) + 3  # its length prefix; compression only makes it smaller
            if batch_bytes + size > min(room, SEGMENT_BYTES):
                written = _flush(node, drive, report, batch)
                room = drive.free_bytes() if written else 0
                if batch_bytes + size > room or not written:  # full: stop cleanly
                    report.left_behind = total - report.to_drive
                    report.full = report.full or "no room left within the drive's cap"
                    return
                batch, batch_bytes = [], 0
                yield {"phase": "to drive", "done": report.to_drive, "total": total}
            batch.append((feed, seq, raw))
            batch_bytes += size
    if not _flush(node, drive, report, batch):
        report.left_behind = total - report.to_drive
    yield {"phase": "to drive", "done": report.to_drive, "total": total}


def _plan(node: Node, drive: Drive) -> list[tuple[FeedId, int, int]]:
    """(feed, first, latest) to write, most wanted first: what other boxes on the drive
    want and lack, then our own and followed feeds, then the rest the policy keeps."""
    me = format_feed_id(node.feed_id)
    store = node.store
    start: dict[FeedId, int] = {}
    for feed in store.feeds():
        head = store.head(feed)
        if head is None:
            continue
        carried = drive.carried.get(format_feed_id(feed))
        start[feed] = head.first if carried is None else max(head.first, carried[1] + 1)

    def wanted_by_others(feed: FeedId) -> bool:
        name = format_feed_id(feed)
        for box, record in drive.boxes.items():
            clock = record.get("clock")
            if box == me or not isinstance(clock, dict) or name not in clock:
                continue
            if int(clock[name]) < store.latest_seq(feed):
                return True
        return False

    def rank(feed: FeedId) -> tuple[int, int, bytes]:
        hops = node.hops(feed)
        close = hops is not None and hops <= 1
        return (0 if wanted_by_others(feed) else 1 if close else 2, hops or 0, bytes(feed))

    order = sorted((f for f in start if start[f] <= store.latest_seq(f)), key=rank)
    return [(f, start[f], store.latest_seq(f)) for f in order]


def _carry(drive: Drive, feed: FeedId, seq: int) -> None:
    name = format_feed_id(feed)
    have = drive.carried.get(name)
    if have is None:
        drive.carried[name] = [seq, seq]
    else:
        have[1] = max(have[1], seq)


def _flush(
    node: Node, drive: Drive, report: SyncReport, batch: list[tuple[FeedId, int, bytes]]
) -> bool:
    """Write ``batch`` as one new segment (temp name, fsync, rename) and list it; False
    (with report.full set) when the drive refused it, which leaves the drive as it was."""
    if not batch:
        return True
    number = int(str(drive.manifest["next"]))
    name = f"s{number:06d}.mnb"
    data = encode_bundle(node.network_key, [raw for _, _, raw in batch])
    try:
        write_atomically(drive.root / _SEGMENTS / name, data)
    except OSError as exc:
        report.full = f"writing {name} failed: {exc.strerror or exc}"
        return False
    drive.manifest["next"] = number + 1
    drive.segments.append(
        {
            "name": name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "entries": len(batch),
        }
    )
    for feed, seq, _ in batch:
        _carry(drive, feed, seq)
    report.to_drive += len(batch)
    report.to_drive_bytes += len(data)
    return True


def sync_stream(node: Node, args: Mapping[str, object]) -> Iterator[dict[str, object]]:
    """The ``usb_sync`` control command: progress Steps, then ``{"summary": ...}``."""
    path = args.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise DriveError("usb_sync needs the drive's absolute path")
    drive = open_drive(Path(path), node.network_key)
    for item in sync_drive(node, drive):
        yield {"summary": item.to_json()} if isinstance(item, SyncReport) else item


def drive_status(drive: Drive) -> dict[str, object]:
    """What the drive carries, who synced it and when, and its room."""
    return {
        "path": str(drive.root),
        "network": drive.manifest["network"],
        "feeds": len(drive.carried),
        "entries": sum(int(str(s["entries"])) for s in drive.segments),
        "carried": {feed: {"first": r[0], "latest": r[1]} for feed, r in drive.carried.items()},
        "boxes": {
            box: {"last_visit_ms": rec.get("seen_ms"), "feeds": _count(rec.get("clock"))}
            for box, rec in drive.boxes.items()
        },
        "segments": len(drive.segments),
        "used_bytes": drive.used_bytes(),
        "cap_bytes": drive.cap_bytes,
        "free_bytes": drive.free_bytes(),
        "damaged": drive.damaged,
    }


def _count(value: object) -> int:
    return len(value) if isinstance(value, dict) else 0

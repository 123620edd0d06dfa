"""``meshnode usb init|status|sync PATH``: a USB drive that carries feeds between boxes.

``sync`` goes through the running daemon when there is one (its control socket), else opens
the node itself. ``sync --auto`` is what the plug-in service runs: a drive without a
``meshnode/`` folder is left alone (and said so), unless its filesystem label is the one
set in ``[usb] label``, which makes it a meshnode drive first. The last sync is recorded in
the data dir for ``meshnode status``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.cli.context import Progress, emit_json, format_bytes, open_access
from meshnode.errors import ConfigError
from meshnode.host.config import parse_size
from meshnode.host.datadir import load_network_key
from meshnode.host.usb_history import record_usb_sync, usb_syncs
from meshnode.secure.identity import format_feed_id
from meshnode.usb.drive import DRIVE_DIR, DriveError, carried, init_drive, open_drive

if TYPE_CHECKING:
    import argparse

    from meshnode.cli.context import Context
    from meshnode.usb.drive import Drive

__all__ = ["add_usb_commands", "drive_status", "last_usb_sync"]

_LISTED_FEEDS = 10  # `usb status` lists this many carried feeds; --json lists all
_LISTED_NOTES = 100  # and this many notes of each kind: a crafted drive has 100,000s


def add_usb_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``usb init``, ``usb status`` and ``usb sync``."""
    usb = sub.add_parser("usb", help="carry feeds on a USB drive between boxes")
    verbs = usb.add_subparsers(dest="usb_command", metavar="VERB", required=True)
    p = verbs.add_parser("init", help="make PATH/meshnode/ a drive of this network")
    p.add_argument("path", metavar="PATH", help="where the drive is mounted")
    p.add_argument("--cap", help="most space to use, e.g. 4GiB ([usb] cap_bytes: 1GiB)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_usb_init)
    p = verbs.add_parser("status", help="feeds carried, boxes seen, space used and left")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_usb_status)
    p = verbs.add_parser("sync", help="merge both ways between this node and the drive")
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--auto",
        action="store_true",
        help="for the plug-in service: leave drives that are not meshnode's alone",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_usb_sync)


def cmd_usb_init(ctx: Context, args: argparse.Namespace) -> int:
    """Make the drive folder (or change its cap)."""
    cap = ctx.config.usb.cap_bytes
    if args.cap is not None:
        try:
            cap = parse_size(args.cap, "--cap")
        except ConfigError as exc:
            raise DriveError(str(exc)) from None
    drive = init_drive(Path(args.path), load_network_key(ctx.data_dir), cap)
    try:
        status = drive_status(drive)
    finally:
        drive.close()
    if args.json:
        emit_json(status)
    else:
        print(
            f"{drive.root} is a meshnode drive (network {status['network']}): cap "
            f"{format_bytes(cap)}, {format_bytes(_int(status['free_bytes']))} left"
        )
    return 0


def cmd_usb_status(ctx: Context, args: argparse.Namespace) -> int:
    """What the drive carries and who synced it (the drive is only read)."""
    drive = open_drive(Path(args.path), load_network_key(ctx.data_dir), repair=False)
    try:
        status = drive_status(drive)
    finally:
        drive.close()
    if args.json:
        emit_json(status)
        return 0
    print(f"drive    {drive.root} (network {status['network']})")
    print(
        f"carries  {_count(status['entries'], 'entry', 'entries')} of "
        f"{_count(status['feeds'], 'feed')} in {_count(status['segments'], 'segment')}"
    )
    carried = status["carried"]
    assert isinstance(carried, dict)
    for feed, run in list(carried.items())[:_LISTED_FEEDS]:
        print(f"feed     {feed} {run['first']}..{run['latest']}")
    if len(carried) > _LISTED_FEEDS:
        print(f"feed     ... and {len(carried) - _LISTED_FEEDS} more (--json lists them all)")
    used, cap, free = (_size(status, k) for k in ("used_bytes", "cap_bytes", "free_bytes"))
    print(f"space    {used} used of a {cap} cap, {free} left")
    boxes = status["boxes"]
    assert isinstance(boxes, dict)
    for box, seen in sorted(boxes.items(), key=lambda kv: -_int(kv[1]["last_visit_ms"])):
        wants = _count(seen["feeds"], "feed")
        print(f"box      {box} last visit {_when(seen['last_visit_ms'])}, wants {wants}")
    for damage in drive.damaged[:_LISTED_NOTES]:
        print(f"damaged  {damage} (repaired at the next sync; other boxes carry it again)")
    for note in drive.left_alone[:_LISTED_NOTES]:
        print(f"left     {note}, left alone: meshnode follows no links on a drive")
    if drive.blocked:
        print(f"blocked  {drive.blocked}")
    return 0


def cmd_usb_sync(ctx: Context, args: argparse.Namespace) -> int:
    """Merge both ways; progress on a terminal, a summary at the end."""
    path = Path(args.path).resolve()
    if args.auto and not _ours(ctx, path):
        print(f"{path}: no {DRIVE_DIR}/ folder; not a meshnode drive, left alone")
        return 0
    summary: dict[str, object] = {}
    bars: dict[str, Progress] = {}
    with open_access(ctx) as access:
        for item in access.stream("usb_sync", path=str(path)):
            if isinstance(item.get("summary"), dict):
                summary = item["summary"]  # type: ignore[assignment]
            elif "phase" in item:
                phase = str(item["phase"])
                if phase not in bars:
                    total = _int(item.get("total"))
                    bars[phase] = Progress(phase, total, enabled=not ctx.quiet, tty_only=True)
                bars[phase].update(_int(item.get("done")))
    for bar in bars.values():
        bar.finish()
    _record(ctx, path, summary)
    if args.json:
        emit_json(summary)
    else:
        _print_summary(path, summary)
    return 0


def drive_status(drive: Drive) -> dict[str, object]:
    """What the drive carries, who synced it and when, and its room (JSON-ready)."""
    runs = carried(drive.manifest)
    room, limit = drive.room()
    return {
        "path": str(drive.root),
        "network": drive.manifest.network,
        "feeds": len(runs),
        "entries": sum(s.entries() for s in drive.manifest.segments),
        "carried": {
            format_feed_id(feed): {"first": first, "latest": latest}
            for feed, (first, latest) in sorted(runs.items())
        },
        "boxes": {
            format_feed_id(box): {"last_visit_ms": visit.seen_ms, "feeds": len(visit.clock)}
            for box, visit in drive.manifest.boxes.items()
        },
        "segments": len(drive.manifest.segments),
        "used_bytes": drive.used_bytes(),
        "cap_bytes": drive.manifest.cap_bytes,
        "free_bytes": room,
        "limited_by": limit,
        "damaged": drive.damaged,
        "unlisted": drive.cleaned,
        "adoptable": drive.adopted,
        "left_alone": drive.left_alone,
        "blocked": drive.blocked or None,
    }


def _ours(ctx: Context, path: Path) -> bool:
    """A meshnode drive, or one whose label asks to become one (then made one)."""
    if (path / DRIVE_DIR).is_dir():
        return True
    label = ctx.config.usb.label
    if not label or _label_of(path) != label:
        return False
    init_drive(path, load_network_key(ctx.data_dir), ctx.config.usb.cap_bytes).close()
    return True


def _label_of(mountpoint: Path) -> str | None:
    """The filesystem label of what is mounted at ``mountpoint`` (from /dev/disk/by-label)."""
    source = None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[4] == str(mountpoint):
                source = fields[fields.index("-") + 2]
    except (OSError, ValueError, IndexError):
        return None
    labels = Path("/dev/disk/by-label")
    if source is None or not labels.is_dir():
        return None
    for link in labels.iterdir():
        if os.path.realpath(link) == os.path.realpath(source):
            return link.name.replace("\\x20", " ")
    return None


def _record(ctx: Context, path: Path, summary: dict[str, object]) -> None:
    """Note the sync in the data dir for ``meshnode status`` and the operator's page."""
    record_usb_sync(ctx.data_dir, {"at_ms": int(time.time() * 1000), "drive": str(path), **summary})


def last_usb_sync(data_dir: Path) -> dict[str, object] | None:
    """The last sync's record, if there is a readable one."""
    records = usb_syncs(data_dir)
    return records[-1] if records else None


def _print_summary(path: Path, s: dict[str, object]) -> None:
    detail = s.get("from_drive_detail")
    detail = detail if isinstance(detail, dict) else {}
    held = f" ({detail['held']} already held)" if _int(detail.get("held")) else ""
    print(
        f"from drive  {s.get('from_drive')} entries added{held}, {s.get('rejected')} "
        f"rejected, {format_bytes(_int(s.get('read_bytes')))} read"
    )
    for reason, n in dict(detail.get("reasons") or {}).items():
        print(f"            rejected {n}: {reason}")
    print(f"to drive    {s.get('to_drive')} entries, {_size(s, 'to_drive_bytes')}")
    if s.get("full"):
        what = "its cap" if s["full"] == "cap" else "the drive's free space"
        print(
            f"drive full  {s.get('left_behind')} entries did not fit in {what}: what fit is "
            f"on the drive. More room: meshnode usb init {path} --cap SIZE, or a bigger drive"
        )
    for damage in _strings(s.get("damaged")):
        print(f"damaged     {damage}: dropped; boxes that hold it carry it again")
    if s.get("adopted"):
        print(f"recovered   {', '.join(_strings(s.get('adopted')))} (cut off by a pulled drive)")
    for note in _strings(s.get("left_alone")):
        print(f"left alone  {note} (meshnode follows no links and opens no special files)")
    if s.get("not_written"):
        print(f"not written {s['not_written']}")
    print(f"space       {_size(s, 'free_bytes')} left on the drive ({_size(s, 'used_bytes')} used)")
    print("done: safe to remove once unmounted")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _size(record: dict[str, object], key: str) -> str:
    return format_bytes(_int(record.get(key)))


def _count(n: object, one: str, many: str = "") -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


def _when(ms: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(_int(ms) / 1000))

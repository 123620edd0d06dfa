"""Merge a node and a USB drive both ways (``meshnode usb sync``).

``sync_drive`` is a generator that the CLI runs, or the daemon as the ``usb_sync`` control
command. It touches the node only on the thread that runs it, between the items it
yields; all file work on the drive is yielded as a ``jobs.Job``, which the daemon runs in a
worker thread, so its event loop keeps serving links and timers during a long sync (the
node is not thread-safe; the jobs never see it). The steps:

1. lock the drive (one sync at a time), open and repair it;
2. drive to node: each segment listing a feed the node wants and lacks entries of is read
   and those entries ingested in batches: verified, stored, or rejected with the reason and
   counted. Again, for the feeds that became wanted, when a follow from the drive widened
   the node's wants. A run the segment lists but did not deliver (missing, forged or
   broken entries of a feed the node still wants) is unlisted from there on: what the
   drive claims is a hint, so the box then writes what the drive really lacks;
3. node to drive: what the drive lacks, within its cap and free space, most wanted first:
   feeds other boxes' clocks on the drive want and lack, then our own and followed feeds,
   then the rest the policy keeps, nearest first. Each feed's run continues the drive's.
   A full drive stops the writing cleanly: what fit is listed, the rest counted;
4. this box's visit and clock go in the manifest, written last.

Links and special files on the drive are left alone and reported (``left_alone``, a log
line); when one stands where the manifest or segments go, step 2 still runs but nothing
is written (``not_written`` says why). Every step is linear in what the drive lists.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from meshnode.codec.manifest import BoxVisit, SegmentInfo
from meshnode.codec.message import entry_author
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.host.importer import BATCH, ImportTally, ingest_all
from meshnode.host.jobs import Job
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId, Seq
from meshnode.usb.drive import (
    SEGMENT_BYTES,
    DriveError,
    DriveFull,
    carried,
    lock_drive,
    open_drive,
    read_segment,
    save_drive,
    segment_entries,
    unlist,
    write_segment,
)
from meshnode.usb.priority import private_first

if TYPE_CHECKING:
    from collections.abc import Collection, Generator, Iterator, Mapping
    from pathlib import Path

    from meshnode.core.node import Node
    from meshnode.usb.drive import Drive

__all__ = ["Item", "SyncReport", "plan_writes", "sync_drive", "sync_here"]

log = logging.getLogger(__name__)

Item = dict[str, object] | Job[Any]  # a progress step {"phase", "done", "total"}, or a job
_MAX_PASSES = 4  # reading again for feeds a follow on the drive made wanted
# This box's clock on the drive lists at most this many feeds, nearest first: it only tells
# other boxes what to carry here first, and keeps the manifest well under its limit.
MAX_CLOCK_FEEDS = 10_000
# Notes of each kind in a summary: a crafted drive can have 100,000 of them.
MAX_NOTES = 100
Run = tuple[Seq, Seq]


@dataclass(slots=True)
class SyncReport:
    """What one sync did, both ways."""

    from_drive: ImportTally = field(default_factory=ImportTally)
    read_entries: int = 0
    read_bytes: int = 0
    to_drive: int = 0
    to_drive_bytes: int = 0
    left_behind: int = 0  # entries the drive lacked that did not fit
    full: str = ""  # "cap" or "disk" when writing stopped for want of room
    full_reason: str = ""
    damaged: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)  # links and special files on the drive
    not_written: str = ""  # why nothing was written to the drive, when it was not
    used_bytes: int = 0
    cap_bytes: int = 0
    free_bytes: int = 0

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
            "full_reason": self.full_reason or None,
            "damaged": _notes(self.damaged),
            "cleaned": _notes(self.cleaned),
            "adopted": _notes(self.adopted),
            "left_alone": _notes(self.left_alone),
            "not_written": self.not_written or None,
            "used_bytes": self.used_bytes,
            "cap_bytes": self.cap_bytes,
            "free_bytes": self.free_bytes,
        }


def _notes(notes: list[str]) -> list[str]:
    if len(notes) <= MAX_NOTES:
        return notes
    return [*notes[:MAX_NOTES], f"... and {len(notes) - MAX_NOTES} more"]


def sync_drive(
    node: Node, path: Path, *, now_ms: int, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Item | SyncReport]:
    """Merge both ways with the drive at ``path``: progress steps and jobs, then the report.
    New segments hold at most ``segment_bytes`` of entries.

    Raises:
        DriveError: not a drive of this network, another sync holds it, or it went away
            (nothing is lost: the next sync finds what was written).
    """
    with lock_drive(path):
        opening = Job(lambda: open_drive(path, node.network_key, repair=True))
        yield opening
        drive = opening.result()
        try:
            report = SyncReport(
                damaged=drive.damaged,
                cleaned=drive.cleaned,
                adopted=drive.adopted,
                left_alone=drive.left_alone,
            )
            for note in drive.left_alone[:MAX_NOTES]:
                log.warning("USB drive %s: left alone: %s", path, note)
            yield from _from_drive(node, drive, report)
            if drive.blocked:
                report.not_written = drive.blocked
                log.warning("USB drive %s: %s", path, drive.blocked)
                yield report
                return
            yield from _to_drive(node, drive, report, segment_bytes)
            visit = BoxVisit(seen_ms=now_ms, clock=_our_clock(node))
            boxes = {**drive.manifest.boxes, node.feed_id: visit}
            drive.manifest = replace(drive.manifest, boxes=boxes)
            saving = Job(lambda: _save(drive, report))
            yield saving
            saving.result()
            yield report
        finally:
            drive.close()


def _our_clock(node: Node) -> dict[FeedId, Seq]:
    """The latest seq of each feed this box wants, nearest first, at most MAX_CLOCK_FEEDS."""
    feeds = list(node.replicated())
    if len(feeds) > MAX_CLOCK_FEEDS:
        far = 1 << 30
        feeds.sort(key=lambda f: (h if (h := node.hops(f)) is not None else far, bytes(f)))
        del feeds[MAX_CLOCK_FEEDS:]
    return {feed: node.store.latest_seq(feed) for feed in feeds}


def sync_here(
    node: Node, path: Path, *, now_ms: int, segment_bytes: int = SEGMENT_BYTES
) -> SyncReport:
    """A whole sync on this thread, jobs in place, without progress (tools and tests)."""
    for item in sync_drive(node, path, now_ms=now_ms, segment_bytes=segment_bytes):
        if isinstance(item, Job):
            item.run()
        elif isinstance(item, SyncReport):
            return item
    raise AssertionError("a sync always ends with its report")


def _save(drive: Drive, report: SyncReport) -> None:
    """The manifest, then the room left (a job)."""
    try:
        save_drive(drive)
    except DriveFull as exc:
        raise DriveError(
            f"{exc}: the drive's manifest could not be updated. The drive is as it was "
            "(what was written is found at the next sync); make room on it and sync again"
        ) from exc
    report.used_bytes = drive.used_bytes()
    report.cap_bytes = drive.manifest.cap_bytes
    report.free_bytes = drive.room()[0]


# -- drive to node ---------------------------------------------------------------------


def _news(node: Node, wants: Collection[FeedId], segment: SegmentInfo) -> set[FeedId]:
    """Feeds ``segment`` lists that the node wants and holds less of."""
    news = set()
    for feed, (_, latest) in segment.feeds.items():
        if feed in wants and latest > node.store.latest_seq(feed):
            news.add(feed)
    return news


@dataclass(slots=True)
class _Gone:
    """What one reading pass found the drive does not hold as listed, applied after it:
    segments to drop (name -> why) and feeds cut (segment name -> feeds); ``dead`` is
    every feed whose later copies are dead meanwhile."""

    dropped: dict[str, str] = field(default_factory=dict)
    cut: dict[str, set[FeedId]] = field(default_factory=dict)
    dead: set[FeedId] = field(default_factory=set)


def _from_drive(node: Node, drive: Drive, report: SyncReport) -> Iterator[Item]:
    read: dict[str, set[FeedId]] = {}  # segment name -> feeds already ingested from it
    for _ in range(_MAX_PASSES):
        wants = node.replicated()
        todo = []
        for segment in drive.manifest.segments:
            feeds = _news(node, wants, segment) - read.get(segment.name, set())
            if feeds:
                todo.append((segment, feeds))
        if not todo:
            return
        gone = _Gone()
        yield from _read_pass(node, drive, report, todo, gone)
        for segment, feeds in todo:
            read.setdefault(segment.name, set()).update(feeds)
        if gone.dropped or gone.cut:
            unlisting = Job(partial(unlist, drive, gone.dropped, gone.cut, delete=True))
            yield unlisting
            unlisting.result()


def _read_pass(
    node: Node,
    drive: Drive,
    report: SyncReport,
    todo: list[tuple[SegmentInfo, set[FeedId]]],
    gone: _Gone,
) -> Iterator[Item]:
    """Read and ingest the segments of ``todo`` in order, the next one read ahead."""
    total = report.read_entries + sum(_listed(s, feeds) for s, feeds in todo)
    ahead: _Read | None = None
    try:
        for i, (segment, feeds) in enumerate(todo):
            if ahead is not None and ahead.segment is segment:
                current = ahead
            elif feeds - gone.dead:
                current = _reading(node, drive, segment, feeds - gone.dead)
            else:
                continue  # every copy it lists died with an earlier segment: not read
            yield current.job
            ahead = None
            if i + 1 < len(todo) and todo[i + 1][1] - gone.dead:
                following, more = todo[i + 1]  # read it while this one is ingested
                ahead = _reading(node, drive, following, more - gone.dead)
                ahead.load.start()
            yield from _ingest_read(node, report, current, total, gone)
    finally:
        if ahead is not None:
            ahead.load.run()  # never leave a read running on a drive about to be closed


def _listed(segment: SegmentInfo, feeds: set[FeedId]) -> int:
    return sum(b - a + 1 for f, (a, b) in segment.feeds.items() if f in feeds)


@dataclass(frozen=True, slots=True)
class _Read:
    """A segment as listed when its reading began: the file (``load``, which may run
    ahead: it is I/O and hashing, which leave the interpreter free), then its entries of
    ``feeds``."""

    segment: SegmentInfo
    feeds: frozenset[FeedId]
    load: Job[bytes]
    job: Job[list[bytes]]


def _reading(node: Node, drive: Drive, segment: SegmentInfo, feeds: set[FeedId]) -> _Read:
    """Jobs reading ``segment``'s entries of ``feeds`` that the node lacks."""
    wanted = {feed: int(node.store.latest_seq(feed)) for feed in feeds}
    load = Job(lambda: read_segment(drive, segment))

    def entries() -> list[bytes]:
        load.run()
        return segment_entries(drive, segment, load.result(), wanted)

    return _Read(segment, frozenset(feeds), load, Job(entries))


def _ingest_read(
    node: Node, report: SyncReport, read: _Read, total: int, gone: _Gone
) -> Iterator[Item]:
    """Ingest a segment's entries in batches; note it to drop if it is damaged, and the
    runs it lists but did not deliver to cut."""
    segment = read.segment
    if read.feeds <= gone.dead:
        return  # read ahead, but its copies died with an earlier segment meanwhile
    try:
        raws = read.job.result()
    except DecodeError as exc:  # damaged since it was listed: drop it, and the runs it broke
        gone.dropped[segment.name] = str(exc)
        gone.dead.update(segment.feeds)
        return
    if gone.dead & read.feeds:  # read ahead before an earlier segment's copies died
        raws = [raw for raw in raws if entry_author(raw) not in gone.dead]
    report.read_bytes += segment.size_bytes
    base = report.read_entries
    for done in ingest_all(node, raws, report.from_drive):
        yield {"phase": "from drive", "done": base + done, "total": total}
    report.read_entries += len(raws)
    _cut_short_runs(node, report, read, gone)


def _cut_short_runs(node: Node, report: SyncReport, read: _Read, gone: _Gone) -> None:
    """A listed run the node still wants but did not get whole is a claim the segment does
    not hold (missing, forged or broken entries): it and later copies of the feed are
    unlisted, so what this box writes is decided by what the drive really gives."""
    wants = node.replicated()
    short = [
        feed
        for feed in read.feeds - gone.dead
        if feed in wants and node.store.latest_seq(feed) < read.segment.feeds[feed][1]
    ]
    if not short:
        return
    gone.cut.setdefault(read.segment.name, set()).update(short)
    gone.dead.update(short)
    feed = min(short)
    report.damaged.append(
        f"{read.segment.name}: lists {len(short)} feed(s) further than it holds (such as "
        f"{format_feed_id(feed)} up to {read.segment.feeds[feed][1]}, read up to "
        f"{node.store.latest_seq(feed)}): unlisted from there on"
    )


# -- node to drive ---------------------------------------------------------------------


def plan_writes(node: Node, drive: Drive) -> list[tuple[FeedId, int, int]]:
    """(feed, first, latest) the drive lacks, most wanted first: what other boxes on the
    drive want and lack, then our own and followed feeds, then the rest, nearest first."""
    have = carried(drive.manifest)
    plan = []
    for feed in node.replicated():
        head = node.store.head(feed)
        run = have.get(feed)
        if head is None or (run is not None and not head.first <= run[1] + 1 <= head.latest):
            continue  # nothing held, nothing new, or nothing that continues the drive's run
        plan.append((feed, head.first if run is None else run[1] + 1, int(head.latest)))

    wanting = _wanting(node, drive, {feed: latest for feed, _, latest in plan})

    def rank(item: tuple[FeedId, int, int]) -> tuple[int, int, int, bytes]:
        feed = item[0]
        hops = node.hops(feed)
        near = hops if hops is not None else 1 << 30
        wanted = wanting[feed]
        return (0 if wanted else 1 if near <= 1 else 2, -wanted, near, bytes(feed))

    return sorted(plan, key=rank)


def _wanting(node: Node, drive: Drive, latest: Mapping[FeedId, int]) -> Counter[FeedId]:
    """How many other boxes' clocks on the drive want more of each feed than they hold (one
    pass over the clocks)."""
    wanting: Counter[FeedId] = Counter()
    for box, visit in drive.manifest.boxes.items():
        if box == node.feed_id:
            continue
        for feed, seq in visit.clock.items():
            have = latest.get(feed)
            if have is not None and seq < have:
                wanting[feed] += 1
    return wanting


def _bound(raw_bytes: int) -> int:
    """Most bytes a segment of ``raw_bytes`` of entries (with length prefixes) can take:
    lz4 stores what it cannot shrink, with a few bytes per 64 KiB block."""
    return raw_bytes + raw_bytes // 8192 + 128


@dataclass(slots=True)
class _Batch:
    raws: list[bytes] = field(default_factory=list)
    runs: dict[FeedId, Run] = field(default_factory=dict)
    raw_bytes: int = 0

    def add(self, feed: FeedId, seq: int, raw: bytes) -> None:
        self.raws.append(raw)
        run = self.runs.get(feed)
        self.runs[feed] = (run[0] if run else Seq(seq), Seq(seq))
        self.raw_bytes += len(raw) + 3


def _to_drive(node: Node, drive: Drive, report: SyncReport, segment_bytes: int) -> Iterator[Item]:
    plan = private_first(node, plan_writes(node, drive))
    total = sum(latest - first + 1 for _, first, latest in plan)
    room, kind = drive.room()
    batch = _Batch()
    ended: set[FeedId] = set()  # a feed's later run must not leave a gap on the drive
    for feed, first, latest in plan:
        if feed in ended:
            continue
        for seq in range(first, latest + 1):
            try:
                raw = node.store.get(feed, Seq(seq))
            except (KeyError, StoreCorrupt):
                ended.add(feed)
                break  # evicted meanwhile, or damaged here: the run on the drive ends before
            if _bound(batch.raw_bytes + len(raw) + 3) > min(room, segment_bytes):
                if not (yield from _flush(drive, report, batch)):
                    break
                batch = _Batch()
                room, kind = drive.room()
                if _bound(len(raw) + 3) > room:
                    report.full, report.full_reason = kind, f"no room left ({kind})"
                    break
            batch.add(feed, seq, raw)
            if len(batch.raws) % BATCH == 0:
                done = report.to_drive + len(batch.raws)
                yield {"phase": "to drive", "done": done, "total": total}
        if report.full:
            break
    if not report.full:
        yield from _flush(drive, report, batch)
    report.left_behind = total - report.to_drive
    yield {"phase": "to drive", "done": report.to_drive, "total": total}


def _flush(drive: Drive, report: SyncReport, batch: _Batch) -> Generator[Item, None, bool]:
    """Write ``batch`` as one segment (a job); False, with report.full set, when the drive
    had no room for it (the drive is then as it was)."""
    if not batch.raws:
        return True
    writing = Job(lambda: write_segment(drive, batch.raws, batch.runs))
    yield writing
    try:
        info = writing.result()
    except DriveFull as exc:
        report.full, report.full_reason = exc.kind, str(exc)
        return False
    report.to_drive += len(batch.raws)
    report.to_drive_bytes += info.size_bytes
    return True

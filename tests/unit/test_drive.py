"""USB drives on a plain directory: the data mule, priorities, damage, a full drive."""

from __future__ import annotations

import errno
import hashlib
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.cli.usb import drive_status
from meshnode.codec.bundle import encode_bundle
from meshnode.codec.content import ContactAction
from meshnode.codec.manifest import decode_manifest
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.host.jobs import Job
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.usb import drive as drive_module
from meshnode.usb.drive import (
    DriveError,
    carried,
    drop_segment,
    init_drive,
    lock_drive,
    open_drive,
    save_drive,
)
from meshnode.usb.merge import SyncReport, plan_writes, sync_drive, sync_here
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_700_000_000_000
OTHER_NETWORK = bytes(range(32))


def box(n: int, network_key: bytes = DEFAULT_NETWORK_KEY) -> Node:
    return Node(identity(n), network_key=network_key, store=MemoryStore(), rng=random.Random(n))


def follow(node: Node, other: Node) -> None:
    node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS)


def posts(node: Node, n: int, tag: str) -> None:
    for k in range(n):
        node.post(f"{tag} {k}", timestamp_ms=TS + k)


def holds(node: Node, author: Node) -> int:
    return node.store.latest_seq(author.feed_id)


def test_a_sync_is_a_stream_of_jobs_and_progress_steps_ending_in_its_report(
    tmp_path: Path,
) -> None:
    a = box(1)
    posts(a, 3, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    items = []
    for item in sync_drive(a, tmp_path, now_ms=TS):
        if isinstance(item, Job):
            item.run()  # the daemon runs it in a worker thread; here, in place
        items.append(item)
    report = items[-1]
    assert isinstance(report, SyncReport)
    assert report.to_drive == 3
    steps = [i for i in items[:-1] if not isinstance(i, Job)]
    assert all(isinstance(i, dict) and i["phase"] == "to drive" for i in steps)
    assert sum(isinstance(i, Job) for i in items) >= 3  # open, write, save: off the loop


def test_a_drive_carried_between_boxes_that_never_meet_delivers_every_wanted_feed(
    tmp_path: Path,
) -> None:
    a, b, c = box(1), box(2), box(3)
    for x, y in ((a, b), (a, c), (b, a), (b, c), (c, a), (c, b)):
        follow(x, y)
    posts(a, 5, "a")
    posts(b, 3, "b")
    posts(c, 4, "c")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    for carrier in (a, b, c, a, b):  # one drive carried A, B, C, A, B
        report = sync_here(carrier, tmp_path, now_ms=TS)
        assert report.from_drive.rejected == 0
    for holder in (a, b, c):
        for author in (a, b, c):
            assert holds(holder, author) == holds(author, author)
        assert holder.check().ok
    boxes = drive_status(open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False))["boxes"]
    assert isinstance(boxes, dict)
    assert len(boxes) == 3  # each box left its clock


def test_random_walks_converge(tmp_path: Path) -> None:
    rng = random.Random(7)
    boxes = [box(n) for n in range(1, 5)]
    for x in boxes:
        for y in boxes:
            if x is not y:
                follow(x, y)
        posts(x, rng.randrange(1, 6), "p")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    for _ in range(3):
        for carrier in rng.sample(boxes, len(boxes)):
            sync_here(carrier, tmp_path, now_ms=TS)
            posts(carrier, 1, "more")  # news while the drive is away
    for carrier in boxes * 2:
        sync_here(carrier, tmp_path, now_ms=TS)
    for x in boxes:
        for y in boxes:
            assert holds(x, y) == holds(y, y)


def test_a_second_sync_writes_nothing_and_reads_nothing(tmp_path: Path) -> None:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 20, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, tmp_path, now_ms=TS)
    assert sync_here(b, tmp_path, now_ms=TS).from_drive.added == 20
    again = sync_here(b, tmp_path, now_ms=TS)
    assert (again.read_entries, again.to_drive) == (0, 0)  # nothing new: no segment read


def test_what_other_boxes_want_goes_first_when_room_is_short(tmp_path: Path) -> None:
    a, b, stranger = box(1), box(2), box(4)
    follow(b, a)
    follow(a, stranger)  # a keeps the stranger's feed too, as a followed feed
    posts(a, 40, "wanted by b " + "x" * 100)
    posts(stranger, 40, "no one asked " + "x" * 100)
    for entry in stranger.iter_feed(stranger.feed_id):
        a.ingest(entry.raw)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(b, tmp_path, now_ms=TS)  # b records that it wants a's feed, holding none of it
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    assert [f for f, _, _ in plan_writes(a, drive)][:1] == [a.feed_id]
    drive.manifest = replace(drive.manifest, cap_bytes=drive.used_bytes() + 4000)  # ~20 fit
    save_drive(drive)
    report = sync_here(a, tmp_path, now_ms=TS)
    assert report.full == "cap"
    assert report.left_behind > 0
    runs = carried(open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False).manifest)
    assert runs[a.feed_id][0] == 1
    assert stranger.feed_id not in runs  # b's wants came first; nothing else fit
    assert sync_here(b, tmp_path, now_ms=TS).from_drive.added == runs[a.feed_id][1]


def test_own_and_followed_feeds_go_before_feeds_further_away(tmp_path: Path) -> None:
    a, friend, fof = box(1), box(2), box(3)
    follow(a, friend)
    follow(friend, fof)
    posts(a, 2, "own")
    posts(friend, 2, "friend")
    posts(fof, 2, "fof")
    for entry in [*friend.iter_feed(friend.feed_id), *fof.iter_feed(fof.feed_id)]:
        a.ingest(entry.raw)
    assert holds(a, fof) == 2  # two hops away: kept by the default policy
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    order = [feed for feed, _, _ in plan_writes(a, drive)]
    assert order == [a.feed_id, friend.feed_id, fof.feed_id]


def test_a_forged_entry_on_the_drive_is_rejected_with_its_reason_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 6, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, tmp_path, now_ms=TS)
    # A box that forges: the segment and manifest are well formed, entry 4 is not a's.
    raws = [e.raw for e in a.iter_feed(a.feed_id)]
    forged = bytearray(raws[3])
    forged[-1] ^= 1
    raws[3] = bytes(forged)
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    segment = drive.manifest.segments[0]
    drive.segment_path(segment.name).write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, raws))
    data = drive.segment_path(segment.name).read_bytes()
    fixed = replace(segment, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    drive.manifest = replace(drive.manifest, segments=(fixed,))
    save_drive(drive)
    report = sync_here(b, tmp_path, now_ms=TS)
    assert report.from_drive.added == 3
    assert report.from_drive.rejected >= 1
    assert any("signature" in r for r in report.from_drive.reasons)
    assert holds(b, a) == 3  # never stored past the forgery
    assert b.check().ok


def test_a_follow_read_from_the_drive_brings_the_followed_feed_in_the_same_sync(
    tmp_path: Path,
) -> None:
    a, b, c = box(1), box(2), box(3)
    follow(b, a)
    posts(c, 3, "c")  # c's feed goes on the drive first, before a follows c
    follow(a, c)
    for entry in c.iter_feed(c.feed_id):
        a.ingest(entry.raw)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, tmp_path, now_ms=TS)
    assert holds(b, c) == 0
    sync_here(b, tmp_path, now_ms=TS)
    assert holds(b, a) == 1  # a's follow of c makes c two hops from b
    assert holds(b, c) == 3


def test_a_box_keeping_only_the_tail_of_a_feed_takes_what_is_new_and_rejects_nothing(
    tmp_path: Path,
) -> None:
    a, b, x = box(1), box(2), box(3)
    follow(b, x)
    follow(x, a)  # a is two hops from b: b keeps the latest 100 of a's feed
    for entry in x.iter_feed(x.feed_id):
        b.ingest(entry.raw)
    posts(a, 150, "a")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    init_drive(first, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, first, now_ms=TS)
    sync_here(b, first, now_ms=TS)
    head = b.store.head(a.feed_id)
    assert head is not None
    assert (head.first, head.latest) == (51, 150)
    posts(a, 10, "more")
    init_drive(second, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, second, now_ms=TS)  # one segment of a's 1..160
    report = sync_here(b, second, now_ms=TS)
    assert (report.from_drive.added, report.from_drive.rejected) == (10, 0)
    assert report.read_entries == 10  # what b holds, or held and let go, is not read


def test_a_full_filesystem_stops_cleanly_and_leaves_the_drive_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 200, "x" * 60)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    budget = {"bytes": 9000}  # the filesystem fills after about two segments
    real_write = drive_module.write_atomically

    def small_disk(at: Any, data: bytes) -> None:
        if str(at).endswith(".mnb"):  # manifests live in the margin kept free
            if len(data) > budget["bytes"]:
                budget["bytes"] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            budget["bytes"] -= len(data)
        real_write(at, data)

    monkeypatch.setattr(drive_module, "write_atomically", small_disk)
    report = sync_here(a, tmp_path, now_ms=TS, segment_bytes=4000)
    monkeypatch.undo()
    assert report.full == "disk"
    assert "No space left" in report.full_reason
    assert 0 < report.to_drive < 200
    assert report.left_behind == 200 - report.to_drive
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False)
    assert drive.damaged == drive.cleaned == []  # consistent: no torn or stray files
    assert carried(drive.manifest)[a.feed_id] == (1, report.to_drive)
    assert sync_here(b, tmp_path, now_ms=TS).from_drive.added == report.to_drive
    assert sync_here(a, tmp_path, now_ms=TS).to_drive == 200 - report.to_drive  # room again


def test_a_drive_pulled_out_mid_sync_says_so_and_the_next_sync_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 30, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)

    def pulled(path: Path, data: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(drive_module, "write_atomically", pulled)
    with pytest.raises(DriveError, match=r"removed or failed.*plug it in again"):
        sync_here(a, tmp_path, now_ms=TS)
    monkeypatch.undo()
    assert a.check().ok
    assert sync_here(a, tmp_path, now_ms=TS).to_drive == 30
    assert sync_here(b, tmp_path, now_ms=TS).from_drive.added == 30


def test_one_sync_at_a_time(tmp_path: Path) -> None:
    a = box(1)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    with lock_drive(tmp_path), pytest.raises(DriveError, match="another sync"):
        sync_here(a, tmp_path, now_ms=TS)


def test_a_drive_of_another_network_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    init_drive(tmp_path, OTHER_NETWORK, 1 << 20)
    with pytest.raises(DriveError, match=r"carries network .* this node is on network"):
        sync_here(box(1), tmp_path, now_ms=TS)


def test_another_networks_drive_with_its_manifests_lost_is_left_untouched(
    tmp_path: Path,
) -> None:
    other = box(1, OTHER_NETWORK)
    posts(other, 3, "theirs")
    init_drive(tmp_path, OTHER_NETWORK, 1 << 20)
    sync_here(other, tmp_path, now_ms=TS)
    root = tmp_path / "meshnode"
    for name in ("manifest.json", "manifest.old"):
        (root / name).unlink(missing_ok=True)
    before = sorted(p.name for p in (root / "segments").iterdir())
    with pytest.raises(DriveError, match="carries network"):
        sync_here(box(2), tmp_path, now_ms=TS)
    assert sorted(p.name for p in (root / "segments").iterdir()) == before


def test_a_folder_without_a_drive_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="meshnode usb init"):
        sync_here(box(1), tmp_path, now_ms=TS)


def test_an_empty_meshnode_folder_is_a_new_drive(tmp_path: Path) -> None:
    (tmp_path / "meshnode").mkdir()
    a = box(1)
    posts(a, 2, "a")
    assert sync_here(a, tmp_path, now_ms=TS).to_drive == 2
    assert (tmp_path / "meshnode" / "README.txt").exists()


def _loaded_drive(tmp_path: Path) -> tuple[Node, Node]:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 30, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(a, tmp_path, now_ms=TS)
    posts(a, 30, "more")
    sync_here(a, tmp_path, now_ms=TS)  # two segments: a's 1..30 and 31..60
    return a, b


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_file_cut_flipped_or_extended_is_repaired_or_skipped(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    tmp_path = tmp_path_factory.mktemp("drive")
    a, b = _loaded_drive(tmp_path)
    files = sorted(p for p in (tmp_path / "meshnode").rglob("*") if p.is_file())
    victim = data.draw(st.sampled_from(files))
    raw = bytearray(victim.read_bytes())
    how = data.draw(st.sampled_from(["cut", "flip", "garbage"]))
    if how == "cut":  # pulled out mid-write
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=64))
    victim.write_bytes(bytes(raw))
    report = sync_here(b, tmp_path, now_ms=TS)  # never raises: repaired or skipped
    assert report.from_drive.rejected == 0  # a damaged segment is dropped, never half-read
    assert b.check().ok
    assert holds(b, a) in (0, 30, 60)  # whole segments only, in order
    assert holds(b, a) == 60 or report.damaged
    # The drive is whole again: the box that holds the feed carries the lost part back.
    sync_here(a, tmp_path, now_ms=TS)
    final = sync_here(b, tmp_path, now_ms=TS)
    assert final.from_drive.rejected == 0
    assert holds(b, a) == 60
    assert open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False).damaged == []


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_a_dropped_segment_leaves_later_copies_of_its_feeds_dead(
    tmp_path: Path, damage: str
) -> None:
    """A cut is seen on opening; a flip only on reading, after the next segment was read
    ahead by the listing the drop changes."""
    a, b = _loaded_drive(tmp_path)
    segments = tmp_path / "meshnode" / "segments"
    first = segments / "s000001.mnb"
    data = bytearray(first.read_bytes())
    if damage == "cut":
        del data[-10:]
    else:
        data[len(data) // 2] ^= 0x10
    first.write_bytes(bytes(data))
    report = sync_here(b, tmp_path, now_ms=TS)
    assert len(report.damaged) == 1
    assert report.damaged[0].startswith("s000001.mnb: ")
    assert holds(b, a) == 0  # 31..60 without 1..30 would start b's copy of the feed at 31
    assert report.from_drive.rejected == 0
    manifest = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False).manifest
    assert a.feed_id not in carried(manifest)
    assert sync_here(a, tmp_path, now_ms=TS).to_drive == 60
    assert sync_here(b, tmp_path, now_ms=TS).from_drive.added == 60


def test_garbage_files_and_temporary_leftovers_are_cleaned(tmp_path: Path) -> None:
    a, b = _loaded_drive(tmp_path)
    segments = tmp_path / "meshnode" / "segments"
    (segments / ".s000009.mnb.123.tmp").write_bytes(b"half a segment")
    (segments / "s000042.mnb").write_bytes(b"never listed")
    status = drive_status(open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False))
    assert status["unlisted"] == [".s000009.mnb.123.tmp", "s000042.mnb"]
    assert (segments / "s000042.mnb").exists()  # status only reads
    report = sync_here(b, tmp_path, now_ms=TS)
    assert sorted(report.cleaned) == [".s000009.mnb.123.tmp", "s000042.mnb"]
    assert not (segments / "s000042.mnb").exists()
    assert holds(b, a) == 60


def test_a_segment_written_before_a_torn_manifest_is_adopted(tmp_path: Path) -> None:
    a, b = _loaded_drive(tmp_path)
    root = tmp_path / "meshnode"
    # The second sync's manifest never made it: the first one is all there is.
    (root / "manifest.json").write_bytes((root / "manifest.old").read_bytes())
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    assert drive.adopted == ["s000002.mnb"]
    sync_here(b, tmp_path, now_ms=TS)
    assert holds(b, a) == 60
    manifest = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False).manifest
    assert carried(manifest)[a.feed_id] == (1, 60)


def test_a_dropped_segment_that_could_not_be_deleted_is_never_adopted_back(
    tmp_path: Path,
) -> None:
    _loaded_drive(tmp_path)
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    drop_segment(drive, drive.manifest.segments[0], "changed", delete=False)
    save_drive(drive)
    assert (tmp_path / "meshnode" / "segments" / "s000001.mnb").exists()  # decodes whole
    again = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    assert again.adopted == []
    assert again.cleaned == ["s000001.mnb"]


def test_with_both_manifests_lost_the_drive_is_rebuilt_from_its_segments(
    tmp_path: Path,
) -> None:
    a, b = _loaded_drive(tmp_path)
    root = tmp_path / "meshnode"
    (root / "manifest.json").write_bytes(b"{torn")
    (root / "manifest.old").unlink()
    report = sync_here(b, tmp_path, now_ms=TS)
    assert any("rebuilt" in d for d in report.damaged)
    assert holds(b, a) == 60
    decode_manifest((root / "manifest.json").read_bytes())  # whole again


def test_a_segment_of_someone_elses_entries_cannot_lie_about_its_runs(tmp_path: Path) -> None:
    a, b = _loaded_drive(tmp_path)
    stray = make_chain(identity(9), 3)
    path = tmp_path / "meshnode" / "segments" / "s000007.mnb"
    path.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, [e.raw for e in reversed(stray)]))
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    assert "s000007.mnb" in drive.cleaned  # not one run per feed: not adopted
    assert holds(b, a) == 0


def test_names_on_the_drive_are_portable_and_segments_small(tmp_path: Path) -> None:
    a = box(1)
    posts(a, 50, "x" * 80)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    assert sync_here(a, tmp_path, now_ms=TS, segment_bytes=2000).to_drive == 50
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=False)
    assert len(drive.manifest.segments) > 3
    assert all(s.size_bytes <= 2000 for s in drive.manifest.segments)
    paths = list((tmp_path / "meshnode").rglob("*"))
    assert len({p.as_posix().lower() for p in paths}) == len(paths)  # case-insensitive FS
    for path in paths:
        stem, _, ext = path.name.partition(".")
        assert path.name.isascii()
        assert all(ch.isalnum() or ch in "._-" for ch in path.name)
        assert len(stem) <= 8
        assert len(ext) <= 4  # 8.3 names, but for the extension of manifest.json

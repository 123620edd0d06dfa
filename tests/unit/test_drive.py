"""USB drives (meshnode/drive.py) on a plain directory: the data mule, damage, a full drive."""

from __future__ import annotations

import errno
import json
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode import drive as drive_module
from meshnode.codec.content import ContactAction
from meshnode.drive import DriveError, SyncReport, drive_status, init_drive, open_drive, sync_drive
from meshnode.identity import DEFAULT_NETWORK_KEY
from meshnode.importer import write_atomically
from meshnode.node import Node
from meshnode.store.memory import MemoryStore
from tests.fakes import identity

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_700_000_000_000
OTHER_NETWORK = bytes(range(32))


def box(n: int, network_key: bytes = DEFAULT_NETWORK_KEY) -> Node:
    return Node(identity(n), network_key=network_key, store=MemoryStore())


def sync(node: Node, path: Path) -> SyncReport:
    """One sync; the last item is the report, every one before it a progress step."""
    items = list(sync_drive(node, open_drive(path, node.network_key), now_ms=TS))
    report = items[-1]
    assert isinstance(report, SyncReport)
    assert all(isinstance(step, dict) and "phase" in step for step in items[:-1])
    return report


def follow(node: Node, other: Node) -> None:
    node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS)


def posts(node: Node, n: int, tag: str) -> None:
    for k in range(n):
        node.post(f"{tag} {k}", timestamp_ms=TS + k)


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
    for carrier in (a, b, c, a, b):  # the walk of the issue: A, B, C, A, B
        report = sync(carrier, tmp_path)
        assert report.from_drive.rejected == 0
    for holder in (a, b, c):
        for author in (a, b, c):
            assert holder.store.latest_seq(author.feed_id) == author.store.latest_seq(
                author.feed_id
            )
        assert holder.check().ok
    boxes = drive_status(open_drive(tmp_path, DEFAULT_NETWORK_KEY))["boxes"]
    assert isinstance(boxes, dict)
    assert len(boxes) == 3  # each box left its clock


def test_what_other_boxes_want_goes_first_when_room_is_short(tmp_path: Path) -> None:
    a, b, stranger = box(1), box(2), box(4)
    follow(b, a)
    posts(a, 40, "wanted by b " + "x" * 100)
    posts(stranger, 40, "no one asked " + "x" * 100)
    follow(a, stranger)  # a keeps the stranger's feed too: it is a's followed feed
    for entry in stranger.iter_feed(stranger.feed_id):
        a.ingest(entry.raw)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync(b, tmp_path)  # b records that it wants a's feed, holding nothing of it
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY)
    drive.manifest["cap_bytes"] = drive.used_bytes() + 4000  # room for about 20 entries
    drive.save()
    report = sync(a, tmp_path)
    assert report.full
    assert report.left_behind > 0
    carried = open_drive(tmp_path, DEFAULT_NETWORK_KEY).carried
    assert str(carried.get(_id(a), [0, 0])[1]) > "0"
    assert _id(stranger) not in carried  # b's wants came first; nothing else fit
    assert sync(b, tmp_path).from_drive.added == carried[_id(a)][1]


def _id(node: Node) -> str:
    from meshnode.identity import format_feed_id

    return format_feed_id(node.feed_id)


def test_a_full_filesystem_stops_cleanly_and_leaves_the_drive_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = box(1)
    posts(a, 20, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    before = (tmp_path / "meshnode" / "manifest.json").read_bytes()
    real = write_atomically

    def no_space(path: Path, data: bytes) -> None:
        if path.suffix == ".mnb":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(drive_module, "write_atomically", no_space)
    report = sync(a, tmp_path)
    assert report.to_drive == 0
    assert report.left_behind == 20
    assert "No space left on device" in report.full
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY)  # opens: consistent
    assert drive.segments == []
    assert json.loads(before)["segments"] == []
    monkeypatch.undo()
    assert sync(a, tmp_path).to_drive == 20  # room again: it all goes


def test_a_drive_of_another_network_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    init_drive(tmp_path, OTHER_NETWORK, 1 << 20)
    with pytest.raises(DriveError, match=r"carries network .* this node is on network"):
        open_drive(tmp_path, DEFAULT_NETWORK_KEY)


def test_a_folder_without_a_drive_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DriveError, match="meshnode usb init"):
        open_drive(tmp_path, DEFAULT_NETWORK_KEY)


def _loaded_drive(tmp_path: Path) -> tuple[Node, Node]:
    a, b = box(1), box(2)
    follow(b, a)
    posts(a, 30, "a")
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync(a, tmp_path)
    posts(a, 30, "more")
    sync(a, tmp_path)  # two segments
    return a, b


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_file_cut_or_flipped_is_detected_and_never_reaches_the_node(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    tmp_path = tmp_path_factory.mktemp("drive")
    a, b = _loaded_drive(tmp_path)
    files = sorted(p for p in (tmp_path / "meshnode").rglob("*") if p.is_file())
    victim = data.draw(st.sampled_from(files))
    raw = bytearray(victim.read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]  # pulled out mid-write
    elif data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=64))  # garbage at the end
    victim.write_bytes(bytes(raw))
    report = sync(b, tmp_path)  # never raises: repaired or skipped
    assert report.from_drive.rejected == 0  # a damaged segment is dropped, not half-read
    assert b.check().ok
    held = b.store.latest_seq(a.feed_id)
    if victim.suffix != ".mnb":
        assert held == 60  # the manifest is checksummed and has a spare; README is no data
    else:
        assert held in (30, 60) or held == 0  # whole segments, or none of the damaged one
        assert report.damaged or held == 60
    # Afterwards the drive opens clean and syncs without complaint.
    assert sync(a, tmp_path).from_drive.rejected == 0
    assert open_drive(tmp_path, DEFAULT_NETWORK_KEY).damaged == []


def test_garbage_files_and_temporary_leftovers_are_cleaned(tmp_path: Path) -> None:
    a, b = _loaded_drive(tmp_path)
    segments = tmp_path / "meshnode" / "segments"
    (segments / ".s000009.mnb.123.tmp").write_bytes(b"half a segment")
    (segments / "s000042.mnb").write_bytes(b"never listed")
    report = sync(b, tmp_path)
    assert sorted(report.cleaned) == [".s000009.mnb.123.tmp", "s000042.mnb"]
    assert b.store.latest_seq(a.feed_id) == 60


def test_a_segment_written_before_a_torn_manifest_is_adopted(tmp_path: Path) -> None:
    a, b = _loaded_drive(tmp_path)
    root = tmp_path / "meshnode"
    # The second sync's manifest never made it: the first one is all there is.
    (root / "manifest.json").write_bytes((root / "manifest.old").read_bytes())
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY)
    assert drive.adopted == ["s000002.mnb"]
    sync(b, tmp_path)
    assert b.store.latest_seq(a.feed_id) == 60
    assert open_drive(tmp_path, DEFAULT_NETWORK_KEY).carried[_id(a)] == [1, 60]


def test_with_both_manifests_lost_the_drive_is_rebuilt_from_its_segments(
    tmp_path: Path,
) -> None:
    a, b = _loaded_drive(tmp_path)
    root = tmp_path / "meshnode"
    (root / "manifest.json").write_bytes(b"{torn")
    (root / "manifest.old").unlink()
    report = sync(b, tmp_path)
    assert any("rebuilt" in d for d in report.damaged)
    assert b.store.latest_seq(a.feed_id) == 60


def test_names_on_the_drive_are_portable(tmp_path: Path) -> None:
    _loaded_drive(tmp_path)
    paths = list((tmp_path / "meshnode").rglob("*"))
    assert len({p.as_posix().lower() for p in paths}) == len(paths)  # case-insensitive FS
    for path in paths:
        assert path.name.isascii()
        assert all(ch.isalnum() or ch in "._-" for ch in path.name)
        assert path.is_dir() or path.stat().st_size < drive_module.SEGMENT_BYTES + (1 << 20)


def test_segments_stay_under_the_segment_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drive_module, "SEGMENT_BYTES", 2000)
    a = box(1)
    posts(a, 50, "x" * 80)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    report = sync(a, tmp_path)
    assert report.to_drive == 50
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY)
    assert len(drive.segments) > 3
    assert all(int(str(s["bytes"])) <= 2000 for s in drive.segments)


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
            sync(carrier, tmp_path)
    for x in boxes:
        for y in boxes:
            assert x.store.latest_seq(y.feed_id) == y.store.latest_seq(y.feed_id)

"""A USB drive made by a stranger: links, special files, sizes and claims that lie.

The rules under test (usb/drive.py, usb/folder.py): only regular files proved to be inside
the drive's ``meshnode/`` folder are ever read, written, cut or deleted; every size is
checked before it is read; work is linear in what the drive holds; a drive's claims cost a
box at worst a wasted read, never what it writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshnode.codec.bundle import BUNDLE_MAGIC, BUNDLE_VERSION, encode_bundle
from meshnode.codec.compress import compress_stream
from meshnode.codec.content import ContactAction
from meshnode.codec.manifest import (
    MAX_MANIFEST_BYTES,
    BoxVisit,
    SegmentInfo,
    decode_manifest,
    encode_manifest,
    segment_name,
    segment_number,
)
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import ops
from meshnode.host.jobs import run_inline
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, network_tag
from meshnode.types import FeedId, Seq
from meshnode.usb.drive import (
    MAX_SEGMENT_FILE_BYTES,
    MAX_SEGMENT_NUMBER,
    DriveError,
    carried,
    init_drive,
    open_drive,
    save_drive,
)
from meshnode.usb.merge import SyncReport, sync_here
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TS = 1_700_000_000_000
SYNC_TIMEOUT_S = 30  # a sync that takes longer has hung (a FIFO opened, /dev/zero read)


def box(n: int) -> Node:
    rng = random.Random(n)
    return Node(identity(n), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=rng)


def posts(node: Node, n: int, tag: str) -> None:
    for k in range(n):
        node.post(f"{tag} {k}", timestamp_ms=TS + k)


def holds(node: Node, author: Node) -> int:
    return node.store.latest_seq(author.feed_id)


def loaded(drive: Path) -> tuple[Node, Node]:
    """A drive with two segments of a's feed (1..30, 31..60); b follows a, holds none."""
    a, b = box(1), box(2)
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=TS)
    posts(a, 30, "a")
    init_drive(drive, DEFAULT_NETWORK_KEY, 10 << 20).close()
    sync_here(a, drive, now_ms=TS)
    posts(a, 30, "more")
    sync_here(a, drive, now_ms=TS)
    return a, b


def outside_tree(root: Path, segment: bytes) -> Path:
    """Files a drive must never reach: a fake data dir (secret key, log) and a file whose
    head is a real segment, so a repair that followed a link would cut it."""
    data = root / "data"
    (data / "log").mkdir(parents=True)
    (data / "secret").write_bytes(b"secret key " * 10)
    (data / "log" / "000001.seg").write_bytes(os.urandom(5000))
    (root / "victim.bin").write_bytes(segment + b"tail the repair must not cut" * 40)
    return root


def fingerprint(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every name under ``root`` (links not followed): its type, size and sha256."""
    out = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st_.st_mode) else ""
        out[str(path.relative_to(root))] = (stat.S_IFMT(st_.st_mode), st_.st_size, digest)
    return out


def within(seconds: float, work: Callable[[], SyncReport]) -> SyncReport:
    """``work()`` on a thread; fail (rather than hang the suite) if it does not end."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(_catch(work)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the sync hung for {seconds} s"
    if isinstance(result[0], BaseException):
        raise result[0]
    assert isinstance(result[0], SyncReport)
    return result[0]


def _catch(work: Callable[[], SyncReport]) -> object:
    try:
        return work()
    except BaseException as exc:  # handed back to the test thread
        return exc


KINDS = ["link_file", "link_dir", "link_zero", "dangling", "fifo", "dir", "socket", "hardlink"]
VICTIMS = [
    "manifest.json",
    "manifest.old",
    "README.txt",
    "segments",
    "segments/s000001.mnb",
    "segments/s000002.mnb",
    "segments/s000009.mnb",  # an unlisted name, as a sync cut off would leave
    "segments/.s000003.mnb.1.2.tmp",
]


def plant(victim: Path, kind: str, outside: Path) -> None:
    """Put ``kind`` where ``victim`` was."""
    if victim.is_dir() and not victim.is_symlink():
        shutil.rmtree(victim)
    else:
        victim.unlink(missing_ok=True)
    if kind == "link_file":
        victim.symlink_to(outside / "victim.bin")
    elif kind == "link_dir":
        victim.symlink_to(outside / "data")
    elif kind == "link_zero":
        victim.symlink_to("/dev/zero")
    elif kind == "dangling":
        victim.symlink_to(outside / "nowhere")
    elif kind == "fifo":
        os.mkfifo(victim)
    elif kind == "dir":
        victim.mkdir()
        (victim / "s000001.mnb").write_bytes(b"inside a folder where a file should be")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(victim))
    else:
        os.link(outside / "victim.bin", victim)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(victim=st.sampled_from(VICTIMS), kind=st.sampled_from(KINDS), daemon=st.booleans())
def test_links_and_special_files_in_the_drive_folder_are_left_alone(
    tmp_path_factory: pytest.TempPathFactory, victim: str, kind: str, daemon: bool
) -> None:
    tmp = tmp_path_factory.mktemp("h")
    drive = tmp / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    folder = drive / "meshnode"
    outside = outside_tree(tmp / "out", (folder / "segments" / "s000001.mnb").read_bytes())
    before = fingerprint(outside)
    target = folder / victim
    plant(target, kind, outside)

    def sync() -> SyncReport:
        if not daemon:
            return sync_here(b, drive, now_ms=TS)
        # As the daemon's control socket runs it: ops.usb_sync, jobs in place.
        items = list(run_inline(ops.STREAMS["usb_sync"](b, {"path": str(drive)})))
        summary = items[-1]["summary"]
        assert isinstance(summary, dict)
        report = SyncReport()
        report.left_alone = list(summary["left_alone"])
        report.not_written = summary["not_written"] or ""
        return report

    report = within(SYNC_TIMEOUT_S, sync)  # never raises, never hangs
    assert fingerprint(outside) == before  # nothing outside the drive's folder changed
    assert b.check().ok
    assert holds(b, a) in (0, 30, 60)  # whole segments, in order, or nothing
    # A second name of a plain file is a plain file, and a folder is what segments is.
    odd = kind != "hardlink" and not (victim == "segments" and kind == "dir")
    if odd:
        assert target.is_symlink() or not stat.S_ISREG(target.lstat().st_mode)  # left alone
        assert any(victim.split("/")[-1] in note for note in report.left_alone)
    if odd and victim in ("manifest.json", "manifest.old", "segments"):
        assert report.not_written  # where the sync must write: nothing written, and said so
    # Once the thing is taken away, the drive works again.
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    sync_here(a, drive, now_ms=TS)
    sync_here(b, drive, now_ms=TS)
    assert holds(b, a) == 60
    assert fingerprint(outside) == before


@pytest.mark.parametrize("kind", ["link_dir", "dangling", "fifo"])
def test_a_meshnode_folder_that_is_not_a_folder_is_refused_and_left_alone(
    tmp_path: Path, kind: str
) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    outside = outside_tree(tmp_path / "out", b"")
    before = fingerprint(outside)
    plant(drive / "meshnode", kind, outside)
    with pytest.raises(DriveError, match=r"symbolic link|no meshnode/ folder"):
        within(SYNC_TIMEOUT_S, lambda: sync_here(box(2), drive, now_ms=TS))
    with pytest.raises(DriveError, match=r"symbolic link|no meshnode/ folder"):
        init_drive(drive, DEFAULT_NETWORK_KEY, 1 << 20)
    assert fingerprint(outside) == before


def test_segments_linked_to_the_data_dir_cost_it_nothing(tmp_path: Path) -> None:
    """The attack as found: ``segments`` a link to the node's data dir, whose files the old
    repair deleted as unlisted."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    assert holds(a, a) == 60
    outside = outside_tree(tmp_path / "out", b"")
    before = fingerprint(outside)
    shutil.rmtree(drive / "meshnode" / "segments")
    (drive / "meshnode" / "segments").symlink_to(outside / "data")
    report = sync_here(b, drive, now_ms=TS)
    assert fingerprint(outside) == before
    assert report.not_written.startswith(f"{drive}/meshnode/segments is a symbolic link")
    assert report.cleaned == []


# -- sizes ---------------------------------------------------------------------------------


def _sparse(path: Path, size: int, head: bytes = b"") -> None:
    with path.open("wb") as f:
        f.write(head)
        f.truncate(size)


def test_oversized_manifests_and_segments_are_refused_before_they_are_read(
    tmp_path: Path,
) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    folder = drive / "meshnode"
    _sparse(folder / "manifest.json", 400 << 20, b"{")  # 400 MB, and torn
    _sparse(folder / "segments" / "s000007.mnb", 400 << 20, BUNDLE_MAGIC)  # unlisted
    tracemalloc.start()
    try:
        report = sync_here(b, drive, now_ms=TS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_MANIFEST_BYTES  # at most the limit + 1 of any file is ever read
    assert any(d.startswith("manifest.json: over") for d in report.damaged)
    assert "s000007.mnb" in report.cleaned  # unlisted, not a segment: deleted (it is ours)
    assert holds(b, a) == 60  # manifest.old still says what the drive holds


def test_a_listing_no_segment_could_hold_is_dropped_unread(tmp_path: Path) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=True)
    first, second = d.manifest.segments
    huge = replace(second, size_bytes=MAX_SEGMENT_FILE_BYTES + 1)
    d.manifest = replace(d.manifest, segments=(first, huge))
    save_drive(d)
    report = sync_here(b, drive, now_ms=TS)
    assert any("more than a segment takes" in x for x in report.damaged)
    assert holds(b, a) == 30


@pytest.mark.slow
def test_a_valid_manifest_of_a_million_feeds_is_refused_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """The brief's 55 MiB manifest (one box clock of 10**6 feeds): 580 MiB RSS before."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, _ = loaded(drive)
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=False)
    clock = {FeedId(hashlib.sha256(n.to_bytes(4, "big")).digest()): Seq(n) for n in range(10**6)}
    big = replace(d.manifest, boxes={a.feed_id: BoxVisit(seen_ms=TS, clock=clock)})
    data = encode_manifest(big)
    assert len(data) > 50 << 20
    (drive / "meshnode" / "manifest.json").write_bytes(data)
    del data, big, clock
    script = (
        "import resource, random, sys\n"
        "from pathlib import Path\n"
        "from meshnode.usb.merge import sync_here\n"
        "from tests.hostile.test_drive import box\n"
        "from meshnode.codec.content import ContactAction\n"
        "b = box(2)\n"
        "b.set_contact(ContactAction.FOLLOW, box(1).feed_id, timestamp_ms=1)\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = sync_here(b, Path(sys.argv[1]), now_ms=1)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((peak - base) // 1024, r.from_drive.added, r.damaged[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(drive)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    grown_mib, added, note = done.stdout.split(maxsplit=2)
    assert int(grown_mib) < 60, done.stdout
    assert int(added) == 60  # manifest.old carries the drive on
    assert note.startswith("manifest.json: over")


# -- work linear in what the drive holds ---------------------------------------------------


def _missing_segments(drive: Path, n: int) -> None:
    """A manifest listing ``n`` segments that are not there, each of its own feed."""
    init_drive(drive, DEFAULT_NETWORK_KEY, 1 << 30).close()
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=False)
    segments = tuple(
        SegmentInfo(
            name=segment_name(i + 1),
            size_bytes=1000,
            sha256="0" * 64,
            feeds={FeedId(hashlib.sha256(i.to_bytes(4, "big")).digest()): (Seq(1), Seq(2))},
        )
        for i in range(n)
    )
    d.manifest = replace(d.manifest, next_segment=n + 1, segments=segments)
    save_drive(d)
    d.close()


def _best_time(work: Callable[[], object], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def test_a_manifest_of_missing_segments_is_repaired_in_linear_time(tmp_path: Path) -> None:
    """8,000 missing segments took 69 s (quadratic) holding the drive lock."""
    times = {}
    for n in (1000, 8000):
        drive = tmp_path / f"d{n}"
        drive.mkdir()
        _missing_segments(drive, n)
        times[n] = _best_time(partial(open_drive, drive, DEFAULT_NETWORK_KEY, repair=False))
    assert times[8000] < 1.5
    assert times[8000] / times[1000] < 20, times  # linear: ~8; quadratic: ~64


def test_segments_that_fail_on_reading_are_dropped_in_linear_time(tmp_path: Path) -> None:
    """Each listed segment is there at its listed size, but its sha256 lies: every one is
    read and dropped (before, each drop rebuilt every later listing)."""
    times = {}
    for n in (500, 4000):
        drive = tmp_path / f"d{n}"
        drive.mkdir()
        init_drive(drive, DEFAULT_NETWORK_KEY, 1 << 30).close()
        wanted = box(3)
        reader = box(4)
        reader.set_contact(ContactAction.FOLLOW, wanted.feed_id, timestamp_ms=TS)
        d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=False)
        segs = []
        for i in range(n):
            name = segment_name(i + 1)
            (drive / "meshnode" / "segments" / name).write_bytes(b"x" * 200)
            feeds = {wanted.feed_id: (Seq(i + 1), Seq(i + 1))}
            segs.append(SegmentInfo(name=name, size_bytes=200, sha256="0" * 64, feeds=feeds))
        d.manifest = replace(d.manifest, next_segment=n + 1, segments=tuple(segs))
        save_drive(d)
        d.close()
        start = time.perf_counter()
        report = sync_here(reader, drive, now_ms=TS)
        times[n] = time.perf_counter() - start
        assert report.damaged[0].startswith("s000001.mnb: cut or changed")
        assert len(report.damaged) == 1  # the rest were dead copies: unlisted, not read
    assert times[4000] < 3
    assert times[4000] / times[500] < 20, times


def _segment_of(raws: list[bytes], body: bytes | None = None) -> bytes:
    if body is None:
        return encode_bundle(DEFAULT_NETWORK_KEY, raws)
    tag = bytes.fromhex(network_tag(DEFAULT_NETWORK_KEY))
    return BUNDLE_MAGIC + bytes((BUNDLE_VERSION,)) + tag + compress_stream(body)


def _plant_segment(drive: Path, data: bytes, feeds: dict[FeedId, tuple[Seq, Seq]]) -> str:
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=True)
    name = segment_name(d.manifest.next_segment)
    (drive / "meshnode" / "segments" / name).write_bytes(data)
    info = SegmentInfo(
        name=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), feeds=feeds
    )
    d.manifest = replace(
        d.manifest,
        next_segment=d.manifest.next_segment + 1,
        segments=(*d.manifest.segments, info),
    )
    save_drive(d)
    d.close()
    return name


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (bytes(8 << 20), "shorter than any entry"),  # 8 MiB of zero-length records
        (b"\x96\x01" + bytes(150), "more than the"),  # one 150-byte record, x 50,000
    ],
)
def test_a_segment_of_records_no_entry_makes_is_dropped_once_and_costs_little(
    tmp_path: Path, body: bytes, why: str
) -> None:
    """Zero-length records cost 1.6 s of CPU per 34 KB, on every sync."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    body = body if len(body) > 1000 else body * 50_000
    data = _segment_of([], body[: 8 << 20])
    assert len(data) < 64 << 10
    _plant_segment(drive, data, {a.feed_id: (Seq(61), Seq(70))})
    start = time.process_time()
    report = sync_here(b, drive, now_ms=TS)
    assert time.process_time() - start < 1.0  # verifying 60 real entries is most of it
    assert any(why in d for d in report.damaged)
    assert holds(b, a) == 60
    again = sync_here(b, drive, now_ms=TS)
    assert (again.read_bytes, again.damaged) == (0, [])  # dropped for good, never re-read


# -- claims --------------------------------------------------------------------------------


def test_a_drive_claiming_the_nodes_own_feed_far_ahead_still_gets_its_entries(
    tmp_path: Path,
) -> None:
    """The drive lists a's feed up to 10**9: a wrote none of its entries, believing it."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = box(1), box(2)
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=TS)
    posts(a, 20, "a")
    init_drive(drive, DEFAULT_NETWORK_KEY, 10 << 20).close()
    # A segment of 2,000 entries of someone else, listed as a's 1..10**9: a claim its size
    # cannot hold.
    stranger = make_chain(identity(9), 3)
    _plant_segment(drive, _segment_of([e.raw for e in stranger]), {a.feed_id: (Seq(1), Seq(10**9))})
    report = sync_here(a, drive, now_ms=TS)
    assert report.to_drive == 20
    assert sync_here(b, drive, now_ms=TS).from_drive.added == 20


def test_a_plausible_claim_is_checked_by_reading_and_then_rewritten(tmp_path: Path) -> None:
    """The listing fits its size: a's real 1..5 and five forged entries, listed 1..10."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = box(1), box(2)
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=TS)
    posts(a, 8, "a")
    init_drive(drive, DEFAULT_NETWORK_KEY, 10 << 20).close()
    real = [e.raw for e in a.iter_feed(a.feed_id)][:5]
    forged = [e.raw for e in make_chain(identity(1), 10, network_key=bytes(32))][5:]
    _plant_segment(drive, _segment_of(real + forged), {a.feed_id: (Seq(1), Seq(10))})
    report = sync_here(a, drive, now_ms=TS)
    assert any("further than it holds" in d for d in report.damaged)
    assert report.to_drive == 8  # decided by what the drive gave, not by what it claimed
    assert carried(open_drive(drive, DEFAULT_NETWORK_KEY, repair=False).manifest)[a.feed_id] == (
        1,
        8,
    )
    assert sync_here(b, drive, now_ms=TS).from_drive.added == 8
    assert a.check().ok
    assert b.check().ok


@pytest.mark.parametrize("claimed", [MAX_SEGMENT_NUMBER + 1, 10**12, (1 << 63) - 1])
def test_a_huge_next_segment_is_a_hint_no_junk_is_left(tmp_path: Path, claimed: int) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=True)
    d.manifest = replace(d.manifest, next_segment=claimed)
    save_drive(d)
    d.close()
    posts(a, 5, "new")
    report = sync_here(a, drive, now_ms=TS)
    assert report.to_drive == 5
    names = sorted(p.name for p in (drive / "meshnode" / "segments").iterdir())
    assert all(segment_number(n) is not None for n in names), names  # nothing half made
    manifest = decode_manifest((drive / "meshnode" / "manifest.json").read_bytes())
    assert {s.name for s in manifest.segments} == set(names)
    assert any("next_segment" in x for x in report.damaged)
    assert sync_here(b, drive, now_ms=TS).from_drive.added == 65


@pytest.mark.slow
def test_what_a_box_writes_never_makes_a_manifest_no_box_reads(tmp_path: Path) -> None:
    """Box visits are hints: the oldest give way before the manifest outgrows the limit."""
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    d = open_drive(drive, DEFAULT_NETWORK_KEY, repair=True)
    clock = {FeedId(hashlib.sha256(n.to_bytes(4, "big")).digest()): Seq(n) for n in range(40_000)}
    boxes = {
        FeedId(hashlib.sha256(b"box" + bytes([k])).digest()): BoxVisit(seen_ms=k, clock=clock)
        for k in range(4)
    }
    d.manifest = replace(d.manifest, boxes=boxes)
    save_drive(d)  # 4 visits of 40,000 feeds: over the limit, so the oldest went
    d.close()
    data = (drive / "meshnode" / "manifest.json").read_bytes()
    assert len(data) <= MAX_MANIFEST_BYTES
    kept = decode_manifest(data).boxes
    assert 0 < len(kept) < 4
    assert max(v.seen_ms for v in kept.values()) == 3  # the newest stays
    sync_here(b, drive, now_ms=TS)
    assert holds(b, a) == 60


def test_a_report_of_a_crafted_drive_stays_small(tmp_path: Path) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    a, b = loaded(drive)
    for n in range(300):
        (drive / "meshnode" / "segments" / f"l{n:05d}").symlink_to("/dev/zero")
    items = list(run_inline(ops.STREAMS["usb_sync"](b, {"path": str(drive)})))
    summary = items[-1]["summary"]
    assert isinstance(summary, dict)
    assert len(summary["left_alone"]) == 101
    assert summary["left_alone"][-1] == "... and 200 more"
    assert len(json.dumps(summary)) < 64 << 10
    assert holds(b, a) == 60


def test_the_command_says_what_it_left_alone_and_why_nothing_was_written(
    tmp_path: Path,
) -> None:
    def meshnode(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meshnode", "--data", str(tmp_path / "node"), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "HOME": str(tmp_path)},
        )

    drive = tmp_path / "stick"
    drive.mkdir()
    assert meshnode("init").returncode == 0
    assert meshnode("usb", "init", str(drive)).returncode == 0
    outside = outside_tree(tmp_path / "out", b"")
    before = fingerprint(outside)
    os.mkfifo(drive / "meshnode" / "segments" / "s000004.mnb")
    (drive / "meshnode" / "manifest.old").symlink_to(outside / "data" / "secret")
    done = meshnode("usb", "sync", str(drive))
    assert done.returncode == 0, done.stderr
    assert "left alone  segments/s000004.mnb: a FIFO (meshnode follows no links" in done.stdout
    assert "not written " in done.stdout
    assert "manifest.old is a symbolic link" in done.stdout
    assert "left alone: segments/s000004.mnb: a FIFO" in done.stderr  # the log line
    assert "Traceback" not in done.stderr
    assert fingerprint(outside) == before

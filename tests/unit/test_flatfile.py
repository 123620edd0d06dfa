"""FileStore on disk: reopen, torn tails, damage, locking, full disks, compaction, fsync."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from meshnode.core.store import ForkRecord
from meshnode.errors import ConfigError, StoreCorrupt, StoreError, StoreFull, StoreLocked
from meshnode.secure.identity import format_feed_id
from meshnode.store.flatfile import FileIo, FileStore, StoreConfig
from meshnode.types import FeedId, PeerId, Seq
from tests.fakes import identity, make_chain
from tests.store_suite import chain

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.codec.message import Entry

PEER = PeerId(b"\x70" * 32)
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _feed(n: int) -> FeedId:
    return FeedId(identity(n).feed_id)


def _segments(path: Path) -> list[Path]:
    return sorted((path / "log").glob("*.seg"))


def _populate(store: FileStore) -> None:
    """Three feeds, an eviction, a fork proof and peer memory."""
    for n in (1, 2, 3):
        for entry in chain(n):
            store.append(entry)
    store.evict(_feed(2), Seq(4))
    fork = make_chain(identity(3), 2, size=33)[1]
    store.record_fork(ForkRecord(feed=_feed(3), seq=Seq(2), raw=fork.raw))
    store.set_peer_state(PEER, b"old")
    store.set_peer_state(PEER, b"new")


def _snapshot(store: FileStore) -> tuple[object, ...]:
    entries = {
        (feed, seq): store.get(feed, Seq(seq))
        for feed, (first, latest) in store.ranges().items()
        for seq in range(first, latest + 1)
    }
    heads = {feed: store.head(feed) for feed in store.feeds()}
    return (
        entries,
        heads,
        store.stats(),
        store.dead_bytes(),
        store.forks(),
        store.peer_state(PEER),
        store.epoch,
        [store.feed_bytes(f) for f in sorted(store.feeds())],
    )


def _flip(path: Path, at: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x04
    path.write_bytes(bytes(blob))


# -- reopen -------------------------------------------------------------------------------


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with FileStore(tmp_path) as store:
        _populate(store)
        before = _snapshot(store)
    assert (tmp_path / "index.bin").exists()
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before
        assert store.ranges()[_feed(2)] == (4, 12)


def test_reopen_without_checkpoint_rebuilds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileStore(tmp_path) as store:
        _populate(store)
        before = _snapshot(store)
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before
    assert "missing; rebuilding" in caplog.text


def test_damaged_checkpoint_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FileStore(tmp_path) as store:
        _populate(store)
        before = _snapshot(store)
    _flip(tmp_path / "index.bin", 60)
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before
    assert "checksum mismatch" in caplog.text


def test_old_checkpoint_is_brought_up_to_date_from_the_log(tmp_path: Path) -> None:
    with FileStore(tmp_path) as store:
        for entry in chain(1)[:5]:
            store.append(entry)
    old = (tmp_path / "index.bin").read_bytes()
    with FileStore(tmp_path) as store:
        for entry in chain(1)[5:]:
            store.append(entry)
        store.evict(_feed(1), Seq(3))
        before = _snapshot(store)
    (tmp_path / "index.bin").write_bytes(old)
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before


def test_checkpoint_ahead_of_the_log_is_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileStore(tmp_path) as store:
        for entry in chain(1)[:5]:
            store.append(entry)
    shorter = _segments(tmp_path)[0].read_bytes()
    with FileStore(tmp_path) as store:
        for entry in chain(1)[5:]:
            store.append(entry)
    _segments(tmp_path)[0].write_bytes(shorter)  # e.g. a card that lost its last writes
    with FileStore(tmp_path) as store:
        assert store.ranges() == {_feed(1): (1, 5)}
        assert store.get(_feed(1), Seq(5)) == chain(1)[4].raw
    assert "stale" in caplog.text


def test_checkpoint_of_another_log_is_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for n in (1, 2):
        with FileStore(tmp_path / str(n)) as store:
            for entry in chain(n):
                store.append(entry)
    ours, theirs = _segments(tmp_path / "1")[0], _segments(tmp_path / "2")[0]
    assert ours.stat().st_size == theirs.stat().st_size
    shutil.copy(theirs, ours)
    with FileStore(tmp_path / "1") as store:
        assert store.ranges() == {_feed(2): (1, 12)}
    assert "has changed" in caplog.text
    shutil.copy(tmp_path / "2" / "index.bin", tmp_path / "1" / "index.bin")
    with FileStore(tmp_path / "1") as store:
        assert store.ranges() == {_feed(2): (1, 12)}
    assert "from another store" in caplog.text


def test_open_scans_only_the_log_after_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = make_chain(identity(5), 60)
    with FileStore(tmp_path) as store:
        for entry in entries:
            store.append(entry)
    segment = _segments(tmp_path)[0]
    # Damage early in the log, far before the checkpoint's tail checksum: a full scan
    # would report it while opening; a checkpointed open finds it only when reading.
    _flip(segment, segment.read_bytes().find(entries[2].raw) + 70)
    with FileStore(tmp_path) as store:
        assert "damaged" not in caplog.text
        assert store.ranges() == {_feed(5): (1, 60)}
        with pytest.raises(StoreCorrupt, match="entry 3 of"):
            store.get(_feed(5), Seq(3))


def test_checkpoint_is_written_while_appending(tmp_path: Path) -> None:
    store = FileStore(tmp_path, StoreConfig(checkpoint_bytes=1000))
    for entry in chain(1):
        store.append(entry)
    assert (tmp_path / "index.bin").exists()
    store.close()


# -- torn tails and damage -----------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "rebuild"])
def test_torn_tail_is_cut_at_every_byte(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, checkpoint: bool
) -> None:
    entries = chain(1)
    with FileStore(tmp_path) as store:
        for entry in entries[:-1]:
            store.append(entry)
    index = (tmp_path / "index.bin").read_bytes()
    segment = _segments(tmp_path)[0]
    start = segment.stat().st_size
    with FileStore(tmp_path) as store:
        store.append(entries[-1])
    full = segment.read_bytes()
    for cut in range(start + 1, len(full)):
        segment.write_bytes(full[:cut])
        if checkpoint:
            (tmp_path / "index.bin").write_bytes(index)
        else:
            (tmp_path / "index.bin").unlink(missing_ok=True)
        caplog.clear()
        with FileStore(tmp_path) as store:
            assert store.ranges() == {_feed(1): (1, 11)}
            assert [store.get(_feed(1), e.seq) for e in entries[:-1]] == [
                e.raw for e in entries[:-1]
            ]
        assert segment.stat().st_size == start
        assert f"cut {cut - start} torn bytes" in caplog.text
    with FileStore(tmp_path) as store:
        store.append(entries[-1])
        assert store.get(_feed(1), Seq(12)) == entries[-1].raw


@pytest.mark.parametrize("junk", [b"\x00" * 4096, b"\xff" * 20, b"random"], ids=str)
def test_garbage_at_the_end_is_cut(tmp_path: Path, junk: bytes) -> None:
    if junk == b"random":
        junk = random.Random(3).randbytes(50_000)
    with FileStore(tmp_path) as store:
        _populate(store)
        before = _snapshot(store)
    segment = _segments(tmp_path)[0]
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(junk)
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before
    assert segment.stat().st_size == size


@pytest.mark.parametrize("where", ["content", "length"])
@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "rebuild"])
def test_damage_in_the_middle_is_named_and_not_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, checkpoint: bool
) -> None:
    entries = chain(1)
    with FileStore(tmp_path) as store:
        _populate(store)
    segment = _segments(tmp_path)[0]
    size = segment.stat().st_size
    at = segment.read_bytes().find(entries[5].raw)
    _flip(segment, at + 80 if where == "content" else at - 7)
    if not checkpoint:
        (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:
        with pytest.raises(StoreCorrupt, match=r"entry 6 of @"):
            store.get(_feed(1), Seq(6))
        if not checkpoint:  # the rebuild sees the gap, and says whose entries it lost
            assert f"entries 6..6 of {format_feed_id(_feed(1))} were lost" in caplog.text
        for entry in entries[:5] + entries[6:]:
            assert store.get(_feed(1), entry.seq) == entry.raw
        assert store.get(_feed(3), Seq(12)) == chain(3)[-1].raw
        assert store.peer_state(PEER) == b"new"
        problems = list(store.verify_log())
        assert problems
        assert {(p.feed, p.seq) for p in problems} - {(None, None)} == {(_feed(1), Seq(6))}
    assert segment.stat().st_size >= size


@pytest.mark.parametrize("which", [0, -1], ids=["first", "latest"])
def test_damage_to_a_feeds_first_or_latest_entry_is_kept_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, which: int
) -> None:
    # The checkpoint's tail checksum sees the flip, so the index is rebuilt; it then has
    # no slot for the lost entry. Bytes an index.bin covered were fsynced: not a torn tail.
    entries = chain(1)
    with FileStore(tmp_path) as store:
        for entry in entries:
            store.append(entry)
    segment = _segments(tmp_path)[0]
    size = segment.stat().st_size
    _flip(segment, segment.read_bytes().find(entries[which].raw) + 80)
    with FileStore(tmp_path) as store:
        held = (2, 12) if which == 0 else (1, 11)
        assert store.ranges() == {_feed(1): held}
        assert [(p.feed, p.seq) for p in store.verify_log()] == [(_feed(1), entries[which].seq)]
    assert "torn" not in caplog.text
    assert "skipping" in caplog.text
    assert segment.stat().st_size == size


def test_torn_tail_after_a_damaged_checkpointed_record_is_cut_only_to_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = chain(1)
    with FileStore(tmp_path) as store:
        for entry in entries[:-1]:
            store.append(entry)
    index = (tmp_path / "index.bin").read_bytes()
    segment = _segments(tmp_path)[0]
    covered = segment.stat().st_size
    with FileStore(tmp_path) as store:
        store.append(entries[-1])
    (tmp_path / "index.bin").write_bytes(index)  # the crash came before a new checkpoint
    segment.write_bytes(segment.read_bytes()[:-30])  # ... and tore the last write
    _flip(segment, segment.read_bytes().find(entries[-2].raw) + 80)
    with FileStore(tmp_path) as store:
        assert store.ranges() == {_feed(1): (1, 10)}
        assert [(p.feed, p.seq) for p in store.verify_log()] == [(_feed(1), Seq(11))]
    assert segment.stat().st_size == covered
    assert f"cut {len(entries[-1].raw) + 9 - 30} torn bytes" in caplog.text


def test_verify_log_of_a_sound_store_is_empty(tmp_path: Path) -> None:
    with FileStore(tmp_path, StoreConfig(segment_bytes=500)) as store:
        _populate(store)
        assert list(store.verify_log()) == []


# -- locking -------------------------------------------------------------------------------


def test_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with FileStore(tmp_path):
        with pytest.raises(
            StoreLocked, match=rf"in use by another meshnode process .pid {os.getpid()}\); stop it"
        ) as refused:
            FileStore(tmp_path)
        assert "control socket" not in str(refused.value)  # there is none (yet)
        code = f"from meshnode.store.flatfile import FileStore; FileStore({str(tmp_path)!r})"
        child = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=CHILD_ENV, check=False
        )
        assert child.returncode != 0
        assert "StoreLocked" in child.stderr
        assert "in use by another meshnode process" in child.stderr
    with FileStore(tmp_path) as store:  # released on close
        assert store.stats().entries == 0


# -- full disk and write errors ------------------------------------------------------------


class FailingIo(FileIo):
    """Writes ``budget`` bytes, then fails with ``error`` (a write may be cut short)."""

    def __init__(self, budget: int, error: int = errno.ENOSPC) -> None:
        self.budget = budget
        self.error = error
        self.fsyncs = 0

    def write(self, fd: int, data: bytes) -> int:
        n = min(len(data), self.budget)
        if n == 0:
            raise OSError(self.error, os.strerror(self.error))
        self.budget -= n
        return super().write(fd, data[:n])

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        super().fsync(fd)


def _append_all(store: FileStore, entries: list[Entry]) -> None:
    for entry in entries:
        store.append(entry)


def _fill_until_full(store: FileStore, entries: list[Entry]) -> int:
    with pytest.raises(StoreFull) as info:
        _append_all(store, entries)
    assert "disk full" in str(info.value)
    assert "00000000.seg" in str(info.value)
    return store.stats().entries


def test_full_disk_loses_nothing_and_recovers(tmp_path: Path) -> None:
    entries = make_chain(identity(6), 30)
    io = FailingIo(budget=1000 + 40)  # the EPOCH file, then a few records and a part
    store = FileStore(tmp_path, io=io)
    held = _fill_until_full(store, entries)
    assert 0 < held < 30
    size = _segments(tmp_path)[0].stat().st_size
    assert size == store.stats().file_bytes
    assert store.ranges() == {_feed(6): (1, held)}
    with pytest.raises(StoreFull):
        store.append(entries[held])
    assert store.ranges() == {_feed(6): (1, held)}
    io.budget = 10**9  # room again
    for entry in entries[held:]:
        store.append(entry)
    store.close()
    with FileStore(tmp_path) as store:
        assert [store.get(_feed(6), e.seq) for e in entries] == [e.raw for e in entries]


def test_other_write_errors_are_store_errors(tmp_path: Path) -> None:
    store = FileStore(tmp_path, io=FailingIo(budget=10**6))
    store.append(chain(1)[0])
    store._io = FailingIo(budget=50, error=errno.EIO)
    with pytest.raises(StoreError, match="Input/output error") as info:
        store.append(chain(1)[1])
    assert not isinstance(info.value, StoreFull)
    assert store.get(_feed(1), Seq(1)) == chain(1)[0].raw
    store.close()
    with FileStore(tmp_path) as store:
        assert store.ranges() == {_feed(1): (1, 1)}


def test_failed_fsync_stops_writes(tmp_path: Path) -> None:
    class BadSync(FileIo):
        def fsync(self, fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

    store = FileStore(tmp_path, StoreConfig(fsync="always"))
    store._io = BadSync()
    with pytest.raises(StoreError, match="fsync"):
        store.append(chain(1)[0])
    with pytest.raises(StoreError, match="read-only until reopened"):
        store.append(chain(1)[1])
    store.close()


# -- compaction ----------------------------------------------------------------------------


def _churn(store: FileStore) -> None:
    for n in (1, 2, 3, 4):
        for entry in chain(n):
            store.append(entry)
        store.evict(_feed(n), Seq(3 * n))
        store.set_peer_state(PEER, bytes([n]) * 40)
    fork = make_chain(identity(2), 5, size=33)[4]
    store.record_fork(ForkRecord(feed=_feed(2), seq=Seq(5), raw=fork.raw))
    store.evict(_feed(1), Seq(9))


@pytest.mark.parametrize("segment_bytes", [64 << 20, 700])
def test_compaction_reclaims_dead_bytes(tmp_path: Path, segment_bytes: int) -> None:
    with FileStore(tmp_path, StoreConfig(segment_bytes=segment_bytes)) as store:
        _churn(store)
        before = _snapshot(store)
        dead = store.dead_bytes()
        size = store.stats().file_bytes
        assert dead > 0
        assert store.compact() == dead
        assert store.dead_bytes() == 0
        assert store.stats().file_bytes == size - dead
        assert sum(p.stat().st_size for p in _segments(tmp_path)) == size - dead
        assert _snapshot(store)[:2] == before[:2]
        assert _snapshot(store)[4:] == before[4:]
        assert store.compact() == 0
        store.append(chain(1, 13)[12])
        assert list(store.verify_log()) == []
        after = _snapshot(store)
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == after
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == after


def test_compaction_drops_damaged_records_and_still_names_them(tmp_path: Path) -> None:
    entries = chain(1)
    with FileStore(tmp_path) as store:
        _churn(store)
    segment = _segments(tmp_path)[0]
    _flip(segment, segment.read_bytes().find(entries[10].raw) + 80)
    with FileStore(tmp_path) as store:
        store.compact()
        with pytest.raises(StoreCorrupt, match=r"entry 11 of @.* lost"):
            store.get(_feed(1), Seq(11))
        assert store.get(_feed(1), Seq(12)) == entries[11].raw
        problems = list(store.verify_log())
        assert [(p.feed, p.seq) for p in problems] == [(_feed(1), Seq(11))]
    with FileStore(tmp_path) as store:
        assert [(p.feed, p.seq) for p in store.verify_log()] == [(_feed(1), Seq(11))]


def test_compaction_on_a_full_disk_loses_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path, io=FailingIo(budget=10**6))
    _churn(store)
    before = _snapshot(store)
    store._io = FailingIo(budget=100)
    with pytest.raises(StoreFull, match="cannot compact"):
        store.compact()
    assert _snapshot(store) == before
    assert not list((tmp_path / "log").glob("*.tmp"))
    store._io = FileIo()
    store.close()
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before


_CRASH_CHILD = """
import os, sys
from meshnode.store.flatfile import FileIo, FileStore, StoreConfig

class CrashIo(FileIo):
    armed = False
    calls = 0
    def fsync(self, fd):
        if self.armed:
            self.calls += 1
            if self.calls == int(sys.argv[2]):
                os._exit(9)
        super().fsync(fd)

io = CrashIo()
store = FileStore(sys.argv[1], StoreConfig(segment_bytes=1500), io=io)
io.armed = True
store.compact()
print(io.calls)
"""


def test_crash_at_any_point_of_compaction_loses_nothing(tmp_path: Path) -> None:
    with FileStore(tmp_path / "orig", StoreConfig(segment_bytes=1500)) as store:
        _churn(store)
        before = _snapshot(store)[:2]
    crash = 1
    while True:
        work = tmp_path / f"crash{crash}"
        shutil.copytree(tmp_path / "orig", work)
        child = subprocess.run(
            [sys.executable, "-c", _CRASH_CHILD, str(work), str(crash)],
            capture_output=True,
            text=True,
            env=CHILD_ENV,
            check=False,
        )
        with FileStore(work, StoreConfig(segment_bytes=1500)) as store:
            assert _snapshot(store)[:2] == before, f"crash at fsync {crash}"
            assert list(store.verify_log()) == []
        if child.returncode == 0:  # compaction finished before the crash point
            break
        assert child.returncode == 9, child.stderr
        crash += 1
    assert crash > 5


def test_leftover_compaction_file_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileStore(tmp_path) as store:
        _churn(store)
        before = _snapshot(store)
    segment = _segments(tmp_path)[0]
    (segment.parent / (segment.name + ".tmp")).write_bytes(segment.read_bytes()[:333])
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:
        assert _snapshot(store) == before
    assert not list((tmp_path / "log").glob("*.tmp"))
    assert "interrupted compaction" in caplog.text


# -- segments, fsync policy, lifecycle ------------------------------------------------------


def test_segments_roll_over_and_dead_ones_are_deleted(tmp_path: Path) -> None:
    entries = make_chain(identity(7), 40)
    with FileStore(tmp_path, StoreConfig(segment_bytes=1000)) as store:
        for entry in entries:
            store.append(entry)
        assert len(_segments(tmp_path)) >= 6
        assert all(p.stat().st_size <= 1000 for p in _segments(tmp_path))
        store.evict(_feed(7), Seq(35))
        count = len(_segments(tmp_path))
        store.compact()
        assert len(_segments(tmp_path)) < count
        assert [store.get(_feed(7), e.seq) for e in entries[34:]] == [e.raw for e in entries[34:]]
    with FileStore(tmp_path, StoreConfig(segment_bytes=1000)) as store:
        assert store.ranges() == {_feed(7): (35, 40)}
        store.append(make_chain(identity(7), 1, start=41, previous=entries[-1].id)[0])


@pytest.mark.parametrize(
    ("policy", "expected"), [("always", 10), ("batch", 3), ("never", 0)]
)  # fmt: skip
def test_fsync_policies(tmp_path: Path, policy: str, expected: int) -> None:
    io = FailingIo(budget=10**6)
    config = StoreConfig(fsync=policy, fsync_batch_entries=3)  # type: ignore[arg-type]
    store = FileStore(tmp_path, config, io=io)
    io.fsyncs = 0
    for entry in chain(1)[:10]:
        store.append(entry)
    assert io.fsyncs == expected
    store.flush()
    assert io.fsyncs == expected + (policy != "always")
    store.close()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"store\.fsync"):
        StoreConfig(fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"store\.segment_bytes"):
        StoreConfig(segment_bytes=0)


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.append(chain(1)[0])
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append(chain(1)[1])
    with pytest.raises(StoreError, match="closed"):
        store.get(_feed(1), Seq(1))
    assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())


def test_epoch_is_kept_and_a_new_store_gets_another(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a") as a:
        epoch = a.epoch
    with FileStore(tmp_path / "a") as a, FileStore(tmp_path / "b") as b:
        assert a.epoch == epoch != b.epoch


# -- kill -9 -------------------------------------------------------------------------------

_APPEND_CHILD = """
import sys
from meshnode.codec.message import ContentType, create_entry
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.store.flatfile import FileStore, StoreConfig

store = FileStore(sys.argv[1], StoreConfig(fsync="never", checkpoint_bytes=4000))
who, previous = Identity(bytes([9]) * 32), None
for seq in range(1, 100_000):
    entry = create_entry(
        who, DEFAULT_NETWORK_KEY, seq=seq, previous=previous, timestamp_ms=seq,
        content_type=ContentType.POST, content=b"entry %d" % seq,
    )
    store.append(entry)
    previous = entry.id
    print(seq, flush=True)
"""


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_APPEND_CHILD), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=CHILD_ENV,
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(child.pid, 9)
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -9
    with FileStore(tmp_path) as store:
        latest = store.latest_seq(_feed(9))
        assert latest >= acknowledged
        for seq in range(1, latest + 1):
            store.get(_feed(9), Seq(seq))
        assert list(store.verify_log()) == []

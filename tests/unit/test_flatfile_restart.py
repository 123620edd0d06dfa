"""FileStore restarts (a capped feed's new tail past a gap): reopen, torn writes, compaction."""

from __future__ import annotations

import itertools
import logging
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from meshnode.errors import StoreFull
from meshnode.store._records import Kind, encode_record
from meshnode.store.flatfile import FileIo, FileStore, StoreConfig
from meshnode.types import FeedId, Seq
from tests.fakes import identity
from tests.store_suite import chain
from tests.unit.test_flatfile import _CRASH_CHILD, CHILD_ENV, FailingIo

if TYPE_CHECKING:
    from pathlib import Path

TINY = StoreConfig(segment_bytes=700)  # a few records per segment
CRASH_CONFIG = StoreConfig(segment_bytes=1500)  # as _CRASH_CHILD opens it
FEED = FeedId(identity(7).feed_id)
OTHER = FeedId(identity(8).feed_id)


def _restarted(store: FileStore) -> None:
    """Feed 7 held 6..10, restarted at 30, extended to 35 and evicted below 33; feed 8 whole."""
    entries = chain(7, 40)
    for entry in entries[5:10]:
        store.append(entry)
    for entry in chain(8):
        store.append(entry)
    store.restart(entries[29])
    for entry in entries[30:35]:
        store.append(entry)
    store.evict(FEED, Seq(33))


def _state(store: FileStore) -> tuple[object, ...]:
    entries = {
        (feed, seq): store.get(feed, Seq(seq))
        for feed, (first, latest) in store.ranges().items()
        for seq in range(first, latest + 1)
    }
    heads = {feed: store.head(feed) for feed in store.feeds()}
    return entries, heads, store.stats().entries, store.stats().entry_bytes


def test_restart_record_layout() -> None:
    # length 5, crc32 of kind || payload, kind 5, then the entry's bytes (flatfile docstring)
    assert encode_record(Kind.RESTART, b"entry").hex() == "050000007d5a0c0c05656e747279"


def _clean(caplog: pytest.LogCaptureFixture) -> bool:
    """Nothing was reported lost or damaged."""
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("config", [StoreConfig(), TINY], ids=["one-segment", "tiny-segments"])
def test_restart_survives_reopen_rebuild_and_compaction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: StoreConfig
) -> None:
    with FileStore(tmp_path, config) as store:
        _restarted(store)
        assert store.ranges() == {FEED: (33, 35), OTHER: (1, 12)}
        before = _state(store)
        # The five entries the restart left behind, and the three evicted since, are dead.
        assert store.dead_bytes() >= sum(len(e.raw) for e in chain(7, 40)[5:10])
    with FileStore(tmp_path, config) as store:
        assert _state(store) == before
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path, config) as store:
        assert _state(store) == before
        assert store.compact() > 0
        assert store.dead_bytes() == 0
        assert _state(store) == before
        assert list(store.verify_log()) == []
        store.append(chain(7, 40)[35])
        after = _state(store)
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path, config) as store:
        assert _state(store) == after
        assert list(store.verify_log()) == []
    assert _clean(caplog)


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "rebuild"])
def test_torn_restart_leaves_the_old_range_at_every_byte(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, checkpoint: bool
) -> None:
    entries = chain(7, 40)
    with FileStore(tmp_path) as store:
        for entry in entries[5:10]:
            store.append(entry)
        old = _state(store)
    index = (tmp_path / "index.bin").read_bytes()
    segment = tmp_path / "log" / "00000000.seg"
    start = segment.stat().st_size
    with FileStore(tmp_path) as store:
        store.restart(entries[29])
    full = segment.read_bytes()
    for cut in range(start, len(full)):
        segment.write_bytes(full[:cut])
        if checkpoint:
            (tmp_path / "index.bin").write_bytes(index)
        else:
            (tmp_path / "index.bin").unlink(missing_ok=True)
        with FileStore(tmp_path) as store:
            assert _state(store) == old, f"cut at {cut}"
    segment.write_bytes(full)
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:
        assert store.ranges() == {FEED: (30, 30)}
    assert "lost to damage" not in caplog.text


def test_restart_on_a_full_disk_changes_nothing(tmp_path: Path) -> None:
    entries = chain(7, 40)
    store = FileStore(tmp_path, io=FailingIo(budget=10**6))
    for entry in entries[5:10]:
        store.append(entry)
    before = _state(store)
    store._io = FailingIo(budget=10)
    with pytest.raises(StoreFull):
        store.restart(entries[29])
    assert _state(store) == before
    store._io = FileIo()
    store.restart(entries[29])
    store.close()
    with FileStore(tmp_path) as store:
        assert store.ranges() == {FEED: (30, 30)}


def test_crash_at_any_point_of_compaction_after_a_restart_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The entries the restart left behind sit in earlier segments than its record, which
    # is dead too (evicted since): compaction must never drop it while they remain.
    with FileStore(tmp_path / "orig", CRASH_CONFIG) as store:
        _restarted(store)
        assert store.dead_bytes() > 0
        store.evict(FEED, Seq(35))
        before = _state(store)
    for crash in itertools.count(1):
        work = tmp_path / f"crash{crash}"
        shutil.copytree(tmp_path / "orig", work)
        args = [sys.executable, "-c", _CRASH_CHILD, str(work), str(crash)]
        child = subprocess.run(args, capture_output=True, text=True, env=CHILD_ENV, check=False)
        with FileStore(work, CRASH_CONFIG) as store:
            assert (_state(store), list(store.verify_log())) == (before, []), crash
        if child.returncode == 0:  # compaction finished before the crash point
            break
        assert child.returncode == 9, child.stderr
    assert crash > 3
    assert _clean(caplog)

"""FileStore.holding(): entry records of a batch gathered into one write, same bytes."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from meshnode.core.store import ForkRecord
from meshnode.errors import StoreError, StoreFull
from meshnode.store.flatfile import HELD_BYTES, FileIo, FileStore, StoreConfig
from meshnode.types import FeedId, PeerId, Seq
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.codec.message import Entry

A, B = identity(60), identity(61)
CHAINS = {who.feed_id: make_chain(who, 30) for who in (A, B)}
# Round-robin over two feeds, as a bundle holds them.
MIXED = [chain[i] for i in range(30) for chain in CHAINS.values()]


class CountingIo(FileIo):
    """Counts writes; fails with ENOSPC once ``budget`` bytes are written."""

    def __init__(self, budget: int = 10**9) -> None:
        self.writes = 0
        self.budget = budget

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        if len(data) > self.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return super().write(fd, data)


def _log(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "log").glob("*.seg")))


def _held(store: FileStore, entries: list[Entry]) -> None:
    with store.holding():
        for entry in entries:
            store.append(entry)


def _fill(path: Path, entries: list[Entry], *, hold: bool, config: StoreConfig) -> None:
    with FileStore(path, config) as store:
        if hold:
            _held(store, entries)
        else:
            for entry in entries:
                store.append(entry)


@pytest.mark.parametrize("segment_bytes", [64 << 20, 3000])  # one segment, or many
def test_held_appends_write_the_same_bytes(tmp_path: Path, segment_bytes: int) -> None:
    config = StoreConfig(segment_bytes=segment_bytes)
    _fill(tmp_path / "one", MIXED, hold=False, config=config)
    _fill(tmp_path / "held", MIXED, hold=True, config=config)
    assert _log(tmp_path / "held") == _log(tmp_path / "one")
    index = [(tmp_path / name / "index.bin").read_bytes() for name in ("held", "one")]
    assert index[0][16:-4] == index[1][16:-4]  # but the random epoch and the checksum


def test_a_held_block_is_one_write_and_on_disk_when_it_ends(tmp_path: Path) -> None:
    io = CountingIo()
    store = FileStore(tmp_path, io=io)
    before, size = io.writes, store.stats().file_bytes
    with store.holding():
        for entry in MIXED:
            store.append(entry)
        assert io.writes == before
        assert (tmp_path / "log/00000000.seg").stat().st_size == size  # not yet handed over
    assert io.writes == before + 1
    assert (tmp_path / "log/00000000.seg").stat().st_size == store.stats().file_bytes
    store.close()


def test_reads_and_other_records_see_the_held_entries(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    feed = FeedId(A.feed_id)
    with store.holding():
        for entry in MIXED[:10]:
            store.append(entry)
        assert store.get(feed, Seq(2)) == CHAINS[A.feed_id][1].raw
        assert store.entry_id(feed, Seq(1)) == CHAINS[A.feed_id][0].id
        store.append(MIXED[10])
        store.set_peer_state(PeerId(b"\x70" * 32), b"memory")
        store.record_fork(ForkRecord(feed=feed, seq=Seq(3), raw=CHAINS[B.feed_id][2].raw))
        store.append(MIXED[11])
    store.close()
    with FileStore(tmp_path) as store:
        assert store.ranges() == {A.feed_id: (1, 6), B.feed_id: (1, 6)}
        assert store.peer_state(PeerId(b"\x70" * 32)) == b"memory"
        assert [f.seq for f in store.forks()] == [3]


def test_many_held_bytes_are_written_before_the_block_ends(tmp_path: Path) -> None:
    io = CountingIo()
    store = FileStore(tmp_path, io=io)
    big = make_chain(identity(62), 40, size=8000)
    before = io.writes
    with store.holding():
        for entry in big:
            store.append(entry)
        assert io.writes - before >= sum(len(e.raw) for e in big) // HELD_BYTES
        assert store._pos - store._written < HELD_BYTES
    store.close()


def test_a_failed_held_write_drops_its_entries_and_stops_writes(tmp_path: Path) -> None:
    io = CountingIo()
    store = FileStore(tmp_path, io=io)
    for entry in MIXED[:4]:
        store.append(entry)
    kept = store.stats()
    io.budget = 1000  # less than the block below
    with pytest.raises(StoreFull):
        _held(store, MIXED[4:20])
    assert store.stats() == kept
    assert store.ranges() == {A.feed_id: (1, 2), B.feed_id: (1, 2)}
    assert store.head(FeedId(A.feed_id)).latest_id == CHAINS[A.feed_id][1].id  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="read-only until reopened"):
        store.append(MIXED[4])
    store.close()
    with FileStore(tmp_path) as store:
        assert store.ranges() == {A.feed_id: (1, 2), B.feed_id: (1, 2)}
        store.append(MIXED[4])


def test_a_failed_held_write_of_new_feeds_and_contacts_forgets_them(tmp_path: Path) -> None:
    io = CountingIo(budget=1000)  # the EPOCH file fits, the block does not
    store = FileStore(tmp_path, io=io)
    with pytest.raises(StoreFull):
        _held(store, MIXED[:20])
    assert store.ranges() == {}
    assert list(store.contacts()) == []
    assert store.stats().entries == 0
    store.close()

"""The file store holds what the memory store holds, through appends, evictions, restarts,
compactions and reopens (with or without the index checkpoint)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.core.memory_store import MemoryStore
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import FeedId, Seq
from tests.store_suite import chain

if TYPE_CHECKING:
    from meshnode.core.store import Store

FEEDS = (7, 8)
LENGTH = 120
CONFIG = StoreConfig(segment_bytes=900)  # a few records per segment

_op = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(FEEDS), st.integers(1, 6)),
    st.tuples(st.just("evict"), st.sampled_from(FEEDS), st.integers(0, 8)),
    st.tuples(st.just("restart"), st.sampled_from(FEEDS), st.integers(2, 25)),
    st.tuples(st.just("reopen"), st.sampled_from(FEEDS), st.booleans()),
    st.tuples(st.just("compact"), st.sampled_from(FEEDS), st.just(0)),
)


def _state(store: Store) -> tuple[object, ...]:
    entries = {
        (feed, seq): store.get(feed, Seq(seq))
        for feed, (first, latest) in store.ranges().items()
        for seq in range(first, latest + 1)
    }
    heads = {feed: store.head(feed) for feed in store.feeds()}
    stats = store.stats()
    return entries, heads, stats.entries, stats.entry_bytes, sorted(store.contacts())


def _apply(stores: list[Store], op: str, n: int, arg: int) -> None:
    entries = chain(n, LENGTH)
    feed = FeedId(entries[0].author)
    latest = stores[0].latest_seq(feed)
    if op == "append":
        for entry in entries[latest : min(latest + arg, LENGTH)]:
            for store in stores:
                store.append(entry)
    elif op == "evict":
        for store in stores:
            store.evict(feed, Seq(latest - arg))
    elif op == "restart" and latest and latest + arg <= LENGTH:
        for store in stores:
            store.restart(entries[latest + arg - 1])


@settings(max_examples=40, deadline=None)
@given(st.lists(_op, min_size=1, max_size=30))
def test_file_store_matches_memory_store(ops: list[tuple[str, int, int]]) -> None:
    model = MemoryStore()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        disk = FileStore(path, CONFIG)
        try:
            for op, n, arg in ops:
                if op == "reopen":
                    disk.close()
                    if arg:
                        (path / "index.bin").unlink(missing_ok=True)
                    disk = FileStore(path, CONFIG)
                elif op == "compact":
                    disk.compact()
                    assert disk.dead_bytes() == 0
                else:
                    _apply([model, disk], op, n, arg)
                assert _state(disk) == _state(model), op
            assert list(disk.verify_log()) == []
        finally:
            disk.close()

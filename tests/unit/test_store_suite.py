"""The Store conformance suite, run against every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from meshnode.core.memory_store import MemoryStore
from meshnode.store.flatfile import FileStore, StoreConfig
from tests.store_suite import CHECKS, MakeStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from meshnode.core.store import Store

BACKENDS = ["memory", "file", "file-tiny-segments"]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    made: list[Store] = []

    def make() -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore()
        else:
            # 400-byte segments put every second or third record in a new segment.
            size = 400 if request.param == "file-tiny-segments" else 64 << 20
            store = FileStore(tmp_path / str(len(made)), StoreConfig(segment_bytes=size))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_conformance(make_store: MakeStore, check: Callable[[MakeStore], None]) -> None:
    check(make_store)

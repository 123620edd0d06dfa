"""The verify pool: bounded read-ahead, verdicts in order, no threads on one core."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import pytest

from meshnode.core.verifier import InlineVerifier, signature_valid
from meshnode.errors import DecodeError
from meshnode.host.verify import IN_FLIGHT_PER_THREAD, PoolVerifier, make_verifier
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Iterator

RAWS = [e.raw for e in make_chain(identity(7), 40)]


def test_verdicts_in_order_with_forged_and_garbage() -> None:
    forged = RAWS[3][:-1] + bytes([RAWS[3][-1] ^ 1])
    raws = [*RAWS[:3], forged, b"\x01" * 10, *RAWS[4:]]
    got = list(PoolVerifier(2, batch_entries=4).checked(raws, DEFAULT_NETWORK_KEY))
    assert [raw for raw, _ in got] == raws
    assert [ok for _, ok in got] == [True] * 3 + [False, None] + [True] * 36
    assert [ok for _, ok in got] == [signature_valid(raw, DEFAULT_NETWORK_KEY) for raw in raws]


def test_read_ahead_is_bounded() -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield RAWS[pulled % len(RAWS)]

    before = threading.active_count()
    limit = 2 * IN_FLIGHT_PER_THREAD * 5  # batches waiting, each of batch_entries
    stream = PoolVerifier(2, batch_entries=5).checked(endless(), DEFAULT_NETWORK_KEY)
    for taken in range(1, 200):
        next(stream)
        assert pulled - taken <= limit + 5
    assert threading.active_count() > before
    stream.close()  # stopping early drops the batches not begun and ends the threads
    assert threading.active_count() == before


def test_one_thread_starts_no_thread() -> None:
    before = threading.active_count()
    verifier = make_verifier(1)
    assert isinstance(verifier, InlineVerifier)
    assert [ok for _, ok in verifier.checked(RAWS, DEFAULT_NETWORK_KEY)] == [None] * len(RAWS)
    assert threading.active_count() == before


def test_default_follows_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})  # taskset -c 3
    assert isinstance(make_verifier(0), InlineVerifier)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    pool = make_verifier(0)
    assert isinstance(pool, PoolVerifier)
    assert pool.threads == 4


def test_a_failing_source_still_hands_over_what_it_gave_first() -> None:
    def damaged() -> Iterator[bytes]:
        yield from RAWS[:11]
        raise DecodeError("bundle truncated")

    stream = PoolVerifier(2, batch_entries=4).checked(damaged(), DEFAULT_NETWORK_KEY)
    got = [next(stream) for _ in range(11)]  # as one thread ingests them before the error
    with pytest.raises(DecodeError, match="truncated"):
        next(stream)
    assert got == [(raw, True) for raw in RAWS[:11]]

"""The verify pool: bounded read-ahead, verdicts in order, no process on one core."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meshnode.core.verifier import InlineVerifier, signature_valid
from meshnode.errors import DecodeError
from meshnode.host.verify import IN_FLIGHT_PER_WORKER, PoolVerifier, make_verifier
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Iterator

RAWS = [e.raw for e in make_chain(identity(7), 40)]


def test_verdicts_in_order_with_forged_and_garbage() -> None:
    forged = RAWS[3][:-1] + bytes([RAWS[3][-1] ^ 1])
    raws = [*RAWS[:3], forged, b"\x01" * 10, *RAWS[4:]]
    pool = PoolVerifier(2, batch_entries=4, check_while_starting=False)
    got = list(pool.checked(raws, DEFAULT_NETWORK_KEY))
    assert [raw for raw, _ in got] == raws
    assert [ok for _, ok in got] == [True] * 3 + [False, None] + [True] * 36
    assert [ok for _, ok in got] == [signature_valid(raw, DEFAULT_NETWORK_KEY) for raw in raws]


def _children() -> set[int]:
    """Pids of this process's children (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == os.getpid():
            out.add(int(stat.parent.name))
    return out


def test_read_ahead_is_bounded() -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield RAWS[pulled % len(RAWS)]

    before = _children()
    limit = 2 * IN_FLIGHT_PER_WORKER * 5  # batches sent ahead, each of batch_entries
    stream = PoolVerifier(2, batch_entries=5).checked(endless(), DEFAULT_NETWORK_KEY)
    for taken in range(1, 400):
        next(stream)
        assert pulled - taken <= limit + 5
    assert len(_children() - before) == 2
    stream.close()  # stopping early ends the workers
    assert _children() == before


def test_a_small_input_starts_no_process() -> None:
    before = _children()
    stream = PoolVerifier(2, batch_entries=50).checked(RAWS, DEFAULT_NETWORK_KEY)
    assert next(stream) == (RAWS[0], None)  # the node checks it
    assert _children() == before
    assert [ok for _, ok in stream] == [None] * (len(RAWS) - 1)


def test_the_node_checks_until_a_worker_has_started() -> None:
    got = list(PoolVerifier(2, batch_entries=2).checked(RAWS * 20, DEFAULT_NETWORK_KEY))
    assert [raw for raw, _ in got] == RAWS * 20
    verdicts = [ok for _, ok in got]
    assert verdicts[:2] == [None, None]  # the first batch: the workers have not started
    first = verdicts.index(True) if True in verdicts else len(verdicts)
    assert verdicts == [None] * first + [True] * (len(verdicts) - first)  # never back


def test_a_dead_worker_leaves_its_batches_to_the_node() -> None:
    before = _children()
    pool = PoolVerifier(2, batch_entries=2, check_while_starting=False)
    stream = pool.checked(RAWS * 50, DEFAULT_NETWORK_KEY)
    got = [next(stream) for _ in range(400)]
    for pid in _children() - before:
        os.kill(pid, signal.SIGKILL)
    got += list(stream)
    assert [raw for raw, _ in got] == RAWS * 50
    assert got[-1] == (RAWS[-1], None)
    assert {ok for _, ok in got} == {None, True}
    assert _children() == before


def test_one_thread_starts_nothing() -> None:
    before = (threading.active_count(), _children())
    verifier = make_verifier(1)
    assert isinstance(verifier, InlineVerifier)
    assert [ok for _, ok in verifier.checked(RAWS * 20, DEFAULT_NETWORK_KEY)] == [None] * 800
    assert (threading.active_count(), _children()) == before


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

    pool = PoolVerifier(2, batch_entries=4, check_while_starting=False)
    stream = pool.checked(damaged(), DEFAULT_NETWORK_KEY)
    got = [next(stream) for _ in range(11)]  # as one thread ingests them before the error
    with pytest.raises(DecodeError, match="truncated"):
        next(stream)
    assert got == [(raw, True) for raw in RAWS[:11]]


def test_no_worker_can_start_so_the_node_checks_all(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_exec(*_args: object, **_kwargs: object) -> None:
        raise FileNotFoundError("no interpreter")

    monkeypatch.setattr(subprocess, "Popen", no_exec)
    pool = PoolVerifier(2, batch_entries=4, check_while_starting=False)
    got = list(pool.checked(RAWS, DEFAULT_NETWORK_KEY))
    assert got == [(raw, None) for raw in RAWS]

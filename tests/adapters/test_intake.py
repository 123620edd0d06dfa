"""The LAN intake: reads taken in order with their verdicts, the socket held while too many
are in flight, and checker processes that start with a stream and end when it does."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys

import pytest

from meshnode.codec.message import Entry, decode_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import checker as checker_module
from meshnode.daemon.checker import START_ENTRIES, CheckerPool
from meshnode.daemon.intake import IN_FLIGHT_PER_WORKER, Intake
from meshnode.daemon.links import LinkTable
from meshnode.daemon.slots import SlotLimits
from meshnode.host.verify import make_verifier
from meshnode.links.tcp import TcpSettings
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.adapters.test_tcp import until
from tests.fakes import identity, make_chain

pytestmark = pytest.mark.integration

CHAIN = make_chain(identity(70), START_ENTRIES + 8)
FORGED = decode_entry(CHAIN[3].raw[:-1] + bytes([CHAIN[3].raw[-1] ^ 1]))


class _HeldPool:
    """A pool whose verdicts come when the test says so."""

    workers = 1

    def __init__(self) -> None:
        self.out: list[tuple[list[bytes], asyncio.Future[list[bool | None]]]] = []

    def check(self, raws: list[bytes]) -> asyncio.Future[list[bool | None]]:
        future: asyncio.Future[list[bool | None]] = asyncio.get_running_loop().create_future()
        self.out.append((raws, future))
        return future

    def answer(self, n: int) -> None:
        raws, future = self.out[n]
        future.set_result([raw != FORGED.raw for raw in raws])


class _Ahead:
    """Stands in for core.ebt.ahead: every frame is a full-form entry."""

    cleared = 0

    def decode(self, frames: list[bytes]) -> list[Entry | None]:
        return [decode_entry(frame) for frame in frames]

    def clear(self) -> None:
        self.cleared += 1


def _intake(
    pool: _HeldPool, taken: list[tuple[bytes, bool | None]], fail_on: bytes = b""
) -> tuple[Intake, list[int]]:
    aborted: list[int] = []

    def take(frames: list[bytes], entries: list[Entry | None], verdicts: list[bool | None]) -> None:
        for frame, entry, ok in zip(frames, entries, verdicts, strict=True):
            assert entry is not None
            assert entry.raw == frame
            if frame == fail_on:
                raise OSError("disk full")
            taken.append((frame, ok))

    intake = Intake(pool, _Ahead(), take, lambda: aborted.append(1))  # type: ignore[arg-type]
    return intake, aborted


def test_reads_are_taken_in_order_and_the_socket_waits_while_too_many_are_out() -> None:
    async def scenario() -> None:
        pool = _HeldPool()
        taken: list[tuple[bytes, bool | None]] = []
        intake, _ = _intake(pool, taken)
        reads = [[CHAIN[2 * i].raw, CHAIN[2 * i + 1].raw] for i in range(3)]
        reads[1][1] = FORGED.raw
        assert intake.receive(reads[0]) is None
        room = intake.receive(reads[1])
        assert IN_FLIGHT_PER_WORKER == 2
        assert room is not None  # two reads out: read no more
        pool.answer(1)  # the second read is checked first: it waits for the first
        await asyncio.sleep(0)
        assert taken == []
        assert not room.done()
        pool.answer(0)
        await asyncio.wait_for(room, 1)
        assert [ok for _, ok in taken] == [True, True, True, False]
        assert intake.receive(reads[2]) is None
        pool.answer(2)
        await asyncio.wait_for(intake.settle(), 1)
        assert [frame for frame, _ in taken] == [raw for read in reads for raw in read]

    asyncio.run(scenario())


def test_a_failure_of_the_node_ends_the_intake_and_settle_raises_it() -> None:
    async def scenario() -> None:
        pool = _HeldPool()
        taken: list[tuple[bytes, bool | None]] = []
        intake, aborted = _intake(pool, taken, fail_on=CHAIN[1].raw)
        intake.receive([CHAIN[0].raw, CHAIN[1].raw])
        intake.receive([CHAIN[2].raw])
        pool.answer(0)
        await asyncio.sleep(0)
        assert aborted == [1]
        with pytest.raises(OSError, match="disk full"):
            await asyncio.wait_for(intake.settle(), 1)
        assert intake.receive([CHAIN[3].raw]) is None  # nothing more is taken
        assert [frame for frame, _ in taken] == [CHAIN[0].raw]

    asyncio.run(scenario())


def test_checker_processes_start_with_a_stream_check_in_order_and_end_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        pool = CheckerPool(2, DEFAULT_NETWORK_KEY)
        few = [e.raw for e in CHAIN[:3]]
        assert await pool.check(few) == [None] * 3  # a few entries: no worker, the node checks
        assert pool.batches == 0
        stream = [e.raw for e in CHAIN]
        stream[3] = FORGED.raw
        stream[5] = b"short"
        first = pool.check(stream)  # the workers start; the batch waits for one of them
        assert pool.running
        assert not pool.ready
        expected: list[bool | None] = [True] * len(stream)
        expected[3], expected[5] = False, None
        assert await first == expected
        monkeypatch.setattr(checker_module, "IDLE_S", 0.2)
        answers = await asyncio.gather(*(pool.check(stream) for _ in range(4)))
        assert answers == [expected] * 4
        assert pool.batches == 5
        await until(lambda: not pool.running, timeout_s=5)
        pool.close()
        await pool.wait_closed()

    asyncio.run(scenario())


def test_only_a_node_checking_on_more_than_one_thread_has_checker_processes() -> None:
    for threads, workers in ((1, None), (2, 2), (3, 3)):
        node = Node(
            identity(71),
            network_key=DEFAULT_NETWORK_KEY,
            store=MemoryStore(),
            rng=random.Random(1),
            verifier=make_verifier(threads),
        )
        table = LinkTable(
            node, identity(71), tcp=TcpSettings(), limits=SlotLimits(), pump=lambda: None
        )
        pool = table.verify_pool
        assert (pool and pool.workers) == workers
        assert pool is None or not pool.running  # nothing starts before a stream comes


def test_a_worker_that_dies_leaves_its_batches_to_the_node_and_another_starts() -> None:
    async def scenario() -> None:
        pool = CheckerPool(1, DEFAULT_NETWORK_KEY)
        stream = [e.raw for e in CHAIN]
        pool.check(stream)
        await until(lambda: pool.ready)
        worker = pool._all[0]
        assert worker._proc is not None
        os.kill(worker._proc.pid, signal.SIGKILL)  # ours, started just above
        with pytest.raises(asyncio.CancelledError):
            await pool.check(stream)
        assert not pool.ready
        assert await pool.check(stream) == [True] * len(stream)  # a new one started for it
        pool.close()
        await pool.wait_closed()

    asyncio.run(scenario())


def test_a_worker_that_does_not_start_in_time_leaves_its_batches_to_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checker_module, "START_TIMEOUT_S", 0.0)

    async def scenario() -> None:
        pool = CheckerPool(1, DEFAULT_NETWORK_KEY)
        with pytest.raises(asyncio.CancelledError):
            await pool.check([e.raw for e in CHAIN])
        await until(lambda: not pool.ready and not any(w.alive for w in pool._all))
        pool.close()
        await pool.wait_closed()

    asyncio.run(scenario())


def test_a_read_whose_batch_was_dropped_is_checked_by_the_node() -> None:
    async def scenario() -> None:
        pool = _HeldPool()
        taken: list[tuple[bytes, bool | None]] = []
        intake, _ = _intake(pool, taken)
        intake.receive([CHAIN[0].raw, FORGED.raw])
        pool.out[0][1].cancel()
        await asyncio.wait_for(intake.settle(), 1)
        assert taken == [(CHAIN[0].raw, None), (FORGED.raw, None)]

    asyncio.run(scenario())


def test_checkers_that_cannot_start_leave_the_node_checking_alone_for_a_while(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")

    async def scenario() -> None:
        pool = CheckerPool(2, DEFAULT_NETWORK_KEY)
        stream = [e.raw for e in CHAIN]
        with pytest.raises(asyncio.CancelledError):
            await pool.check(stream)  # dropped: the intake leaves these to the node
        first = list(pool._all)
        await until(lambda: not any(w.alive for w in first))
        assert await pool.check(stream) == [None] * len(stream)
        assert not pool.running  # none started again within RETRY_S
        await pool.wait_closed()

    asyncio.run(scenario())
    assert "checking on one thread" in caplog.text

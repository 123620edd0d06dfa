"""Real `meshnode run` daemons on LoRa radios: their drivers talk to the emulator's fake modems."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.bench.radio import run_radio
from meshnode.radio import rnode
from meshnode.radio.airtime import LoRaParams
from meshnode.testing.emulator import EmulatedNode, LoRaEmulator
from tests.daemons import daemon_pool, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

# Lossless air converges in 2 to 30 s here (Trickle timers scale with the frame time);
# the wait ends as soon as every copy is there.
SYNC_TIMEOUT_S = 60.0
# Fast settings every driver accepts: a full 255-byte frame takes about 0.1 s.
FREQUENCY_HZ, BANDWIDTH_HZ, SF, CR, TX_POWER_DBM = (
    904_125_000,
    500_000,
    7,
    5,
    14,
)  # on the E22's 1-MHz raster
PARAMS = LoRaParams(
    frequency_hz=FREQUENCY_HZ,
    bandwidth_hz=BANDWIDTH_HZ,
    spreading_factor=SF,
    coding_rate=CR,
    tx_power_dbm=TX_POWER_DBM,
)


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


@contextlib.contextmanager
def running(emulator: LoRaEmulator) -> Iterator[LoRaEmulator]:
    """Run the emulator on its own event loop in a thread; cancel it and close its ptys after."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(emulator.run())

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=serve, name="lora-emulator", daemon=True)
    thread.start()
    try:
        yield emulator
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        try:
            assert not thread.is_alive(), "the emulator thread did not stop"
            loop.close()
        finally:
            emulator.close()


def _start(pool: DaemonPool, name: str, driver: str, port: str) -> None:
    """Start daemon ``name`` with one [[radio]] table on ``port``."""
    config = pool.root / f"{name}.toml"
    config.write_text(
        "[[radio]]\n"
        'name = "lora"\n'
        f'driver = "{driver}"\n'
        f'port = "{port}"\n'
        'region = "US915"\n'
        f"frequency_hz = {FREQUENCY_HZ}\n"
        f"bandwidth_hz = {BANDWIDTH_HZ}\n"
        f"spreading_factor = {SF}\n"
        f"coding_rate = {CR}\n"
        f"tx_power_dbm = {TX_POWER_DBM}\n"
    )
    pool.start(name, pre=("--config", str(config)))


def _wait_holds(pool: DaemonPool, what: str, *copies: tuple[Path, Path, str]) -> None:
    """Wait until each (holder, author, author_id) has every entry of the author's own feed."""
    wanted = [(holder, author_id, pool.feed(author)) for holder, author, author_id in copies]

    def probe() -> bool | None:
        return all(pool.feed(holder, feed_id) == want for holder, feed_id, want in wanted) or None

    wait_for(what, probe, SYNC_TIMEOUT_S)


@pytest.mark.parametrize("driver", ["kiss", "e22", "rylr"])
def test_two_daemons_sync_both_ways_over_the_air(pool: DaemonPool, driver: str) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "-", stdin="".join(f"over the air {i}\n" for i in range(5)))
    pool.ok(a, "post", "a long one, " * 60)  # several link packets on every driver
    nodes = [EmulatedNode(name="a", driver=driver), EmulatedNode(name="b", driver=driver)]
    with running(LoRaEmulator(nodes, params=PARAMS, seed=3)) as emulator:
        try:
            for name in ("a", "b"):
                _start(pool, name, driver, emulator.port(name))
            pool.ok(b, "post", "and back")
            _wait_holds(pool, "A and B to hold each other's feed", (b, a, a_id), (a, b, b_id))
        finally:
            pool.stop_all()
        stats = emulator.stats
    assert len(pool.feed(b, a_id)) == 7  # follow + 6 posts
    assert len(pool.feed(a, b_id)) == 2  # follow + 1 post
    # Sends are paced by their true airtime: no modem ever refused one (RYLR: +ERR=17).
    assert stats["a"].rejected == stats["b"].rejected == 0
    assert stats["a"].sent > 0
    assert stats["b"].sent > 0
    assert stats["a"].delivered > 0
    assert stats["b"].delivered > 0


def test_a_hidden_node_gets_posts_through_the_middle_one(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    c, _ = pool.init("c")
    pool.ok(b, "follow", a_id)
    pool.ok(c, "follow", a_id)
    pool.ok(a, "post", "-", stdin="".join(f"relayed {i}\n" for i in range(4)))
    nodes = [EmulatedNode(name=n, driver="kiss") for n in ("a", "b", "c")]
    emulator = LoRaEmulator(nodes, params=PARAMS, hears={("a", "b"), ("b", "c")}, seed=5)
    with running(emulator):
        try:
            for name in ("a", "b", "c"):
                _start(pool, name, "kiss", emulator.port(name))
            _wait_holds(pool, "C to hold A's feed, relayed by B", (c, a, a_id))
        finally:
            pool.stop_all()
        stats = emulator.stats
    assert len(pool.feed(c, a_id)) == 4
    assert stats["b"].sent > 0  # only B can have carried them
    assert stats["c"].delivered > 0


def test_daemons_converge_through_line_noise_and_dropped_bytes(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "-", stdin="".join(f"noisy {i}\n" for i in range(5)))
    pool.ok(b, "post", "reply")
    nodes = [EmulatedNode(name="a", driver="kiss"), EmulatedNode(name="b", driver="kiss")]
    # Each dropped byte costs a whole packet, and an entry packet is about 130 bytes on the
    # line: 0.2 % loses a quarter of them. At 1 % (70 % lost) convergence took 14 to over 70 s,
    # as each lost WANT round doubles the WANT interval.
    emulator = LoRaEmulator(nodes, params=PARAMS, noise_bytes_per_s=200, drop_bytes=0.002, seed=7)
    with running(emulator):
        try:
            for name in ("a", "b"):
                _start(pool, name, "kiss", emulator.port(name))
            _wait_holds(pool, "A and B to converge through the noise", (b, a, a_id), (a, b, b_id))
        finally:
            pool.stop_all()
        stats = emulator.stats
    for name, data in (("a", a), ("b", b)):
        assert stats[name].noise_bytes > 0
        assert pool.json(data, "check")["ok"] is True


def test_a_device_that_does_not_answer_its_setup_is_never_sent_to(pool: DaemonPool) -> None:
    """A REYAX configured on a port where an RNode sits: no +OK, so no transmission."""
    a, _ = pool.init("a")
    pool.ok(a, "post", "never on the air")
    nodes = [EmulatedNode(name="a", driver="kiss")]
    with running(LoRaEmulator(nodes, params=PARAMS, seed=1)) as emulator:
        try:
            _start(pool, "a", "rylr", emulator.port("a"))

            def problem() -> str | None:
                daemon: Any = pool.json(a, "status").get("daemon")
                radios = daemon.get("radios") if isinstance(daemon, dict) else None
                return radios[0].get("problem") if radios else None

            text = wait_for("the radio to report its problem", problem, SYNC_TIMEOUT_S)
            assert "got no answer" in text
            assert "not transmitting" in pool.daemons[-1].stderr()
        finally:
            pool.stop_all()
        assert emulator.stats["a"].sent == 0


# The emulator alone, with a test acting as the hosts: what the air does to packets.

# SF12: a symbol is 33 ms and carrier sense needs 4 of them, so two writes the test makes
# one after the other reach the air "at once" even when a busy machine delays one of them
# by tens of milliseconds (at SF9 the window was 16 ms, and a loaded CI run missed it).
SLOW = LoRaParams(frequency_hz=FREQUENCY_HZ, spreading_factor=12, coding_rate=5, tx_power_dbm=14)
RADIO_ON = rnode.encode_command(rnode.RNodeCommand.RADIO_STATE, b"\x01")


async def _until(what: str, done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``done`` on the loop until it is true; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def _read_until(fd: int, want: bytes, timeout_s: float = 5.0) -> bytes:
    """Read a host end until ``want`` has arrived; return everything read."""
    got = b""

    def arrived() -> bool:
        nonlocal got
        with contextlib.suppress(BlockingIOError):
            got += os.read(fd, 4096)
        return want in got

    await _until(f"{want.hex()} on the host end", arrived, timeout_s)
    return got


async def _air_rules() -> None:
    nodes = [EmulatedNode(name=n, driver="kiss") for n in ("a", "b", "c")]
    emulator = LoRaEmulator(nodes, params=SLOW, hears={("a", "b"), ("b", "c")})
    run = asyncio.create_task(emulator.run())
    fds = {n: os.open(emulator.port(n), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK) for n in "abc"}
    try:
        async with asyncio.timeout(20):
            detect = rnode.detect_commands()[0]
            os.write(fds["a"], detect)
            await _read_until(fds["a"], rnode.encode_command(rnode.RNodeCommand.DETECT, b"\x46"))
            os.write(fds["a"], rnode.encode_data(b"radio off"))
            await _until("a send refused", lambda: emulator.stats["a"].rejected == 1)
            for fd in fds.values():
                os.write(fd, RADIO_ON)

            os.write(fds["a"], rnode.encode_data(b"alone"))  # B hears it; C is out of range
            await _read_until(fds["b"], rnode.encode_data(b"alone"))
            stats = emulator.stats
            assert (stats["b"].delivered, stats["c"].delivered) == (1, 0)

            os.write(fds["a"], rnode.encode_data(b"hidden one"))  # A and C cannot hear
            os.write(fds["c"], rnode.encode_data(b"hidden two"))  # each other: B gets neither
            await _until("a collision at B", lambda: emulator.stats["b"].collisions == 2)
            assert emulator.stats["b"].delivered == 1

            os.write(fds["b"], rnode.encode_data(b"both talk"))  # at once: neither hears the
            os.write(fds["a"], rnode.encode_data(b"both talk"))  # other (half duplex); C does
            await _until("C to get B's packet", lambda: emulator.stats["c"].delivered == 1)
            stats = emulator.stats
            assert (stats["a"].half_duplex, stats["b"].half_duplex) == (1, 1)
            assert [stats[n].sent for n in "abc"] == [3, 1, 1]
            assert stats["a"].airtime_s > 0
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        for fd in fds.values():
            os.close(fd)
        emulator.close()


def test_the_air_has_range_collisions_and_half_duplex() -> None:
    asyncio.run(_air_rules())


def test_a_backlog_waits_for_the_budget_through_the_real_interface() -> None:
    """80 entries need about 40 s of air, more than EU868's 36 s an hour: A waits.

    The radio interfaces, the kiss driver and the emulator run for real on ptys, on a loop
    whose clock skips idle waits (the radio benchmark's set-up)."""
    result = run_radio(entries=80, seed=2)
    assert result["delivered"] == 1.0
    assert float(str(result["duty_cycle_max"])) <= 0.01 + 1e-9
    assert float(str(result["time_to_deliver_s"])) > 3600  # it did wait for the hour

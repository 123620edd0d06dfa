"""Radio benchmark: three nodes on one LoRa channel, SF9, 125 kHz, CR 4/5, EU868 at 1%.

Runs the real radio interface (meshnode/links/radio.py: airtime budget, fragments,
the ``kiss`` driver for an RNode) of three nodes, each on a pty of the LoRa channel
emulator (meshnode/testing/emulator.py: Semtech airtime with RNode's preamble, half duplex,
collisions, carrier sense), all on one event loop whose clock skips idle waits
(bench/warp.py), so a run that takes hours of air time takes seconds. A posts 50 entries
of 50-byte text; B and C follow A and everyone hears everyone.

* ``air_bytes_per_entry``: every PHY payload byte on the emulated air (RNode's header,
  link packet header and CRC, beacons and control included), divided by the entries
  delivered (50 entries x 2 receivers; goal <= 128).
* ``control_share``: control airtime over all airtime (goal <= 0.10).
* ``duty_cycle_max``: the highest airtime share of any node in any one-hour window
  (must be <= 0.01).
* ``delivered``: fraction of the 100 deliveries made (goal 1.0); ``time_to_deliver_s``.

Five seeds (the random backoffs differ); medians, with the worst delivery, duty cycle and
control share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
from typing import TYPE_CHECKING, Any

from meshnode.bench.warp import run_warped
from meshnode.codec.content import ContactAction
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.host.config import RadioSection
from meshnode.links.radio import RadioInterface
from meshnode.radio.airtime import LoRaParams, duty_cycle_max
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.testing.emulator import EmulatedNode, LoRaEmulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

__all__ = ["bench_radio", "run_radio", "running_tasks"]

_NAMES = ("a", "b", "c")
_TS_MS = 1_700_000_000_000
_LIMIT_S = 6 * 3600.0
_FREQUENCY_HZ, _BANDWIDTH_HZ, _SF, _CR, _POWER_DBM = 868_300_000, 125_000, 9, 5, 14
_PARAMS = LoRaParams(
    frequency_hz=_FREQUENCY_HZ,
    bandwidth_hz=_BANDWIDTH_HZ,
    spreading_factor=_SF,
    coding_rate=_CR,
    tx_power_dbm=_POWER_DBM,
)


def bench_radio(entries: int = 50, seeds: int = 5) -> dict[str, object]:
    """The scenario under ``seeds`` seeds; medians, worst delivery, duty cycle and share."""
    runs = [run_radio(entries, seed) for seed in range(1, seeds + 1)]
    out: dict[str, object] = {"entries": entries, "receivers": 2, "seeds": seeds}
    for key in ("air_bytes_per_entry", "control_share", "time_to_deliver_s", "transmissions"):
        out[key] = statistics.median(float(str(r[key])) for r in runs)
    out["delivered"] = min(float(str(r["delivered"])) for r in runs)
    out["duty_cycle_max"] = max(float(str(r["duty_cycle_max"])) for r in runs)
    out["control_share_max"] = max(float(str(r["control_share"])) for r in runs)
    out["collisions"] = sum(int(str(r["collisions"])) for r in runs)
    out["run_s"] = round(sum(float(str(r["run_s"])) for r in runs), 1)
    return out


def run_radio(entries: int = 50, seed: int = 1) -> dict[str, object]:
    """A posts ``entries`` 50-byte texts; B and C follow A; measure the emulated air."""
    # The interface logs every neighbour it hears; a benchmark prints JSON only.
    logger = logging.getLogger("meshnode")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        result: dict[str, object] = run_warped(_scenario(entries, seed))
    finally:
        logger.setLevel(level)
    return result


def _node(i: int, seed: int) -> Node:
    who = Identity(bytes([0x40 + i]) * 32)
    return Node(
        who,
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(seed * 1000 + i),
    )


def _radio(port: str) -> RadioSection:
    return RadioSection(
        name="lora",
        driver="kiss",
        port=port,
        region="EU868",
        frequency_hz=_FREQUENCY_HZ,
        bandwidth_hz=_BANDWIDTH_HZ,
        spreading_factor=_SF,
        coding_rate=_CR,
        tx_power_dbm=_POWER_DBM,
    )


async def _scenario(entries: int, seed: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    nodes = [_node(i, seed) for i in range(len(_NAMES))]
    for follower in nodes[1:]:
        follower.set_contact(ContactAction.FOLLOW, nodes[0].feed_id, timestamp_ms=_TS_MS)
    for k in range(entries):
        nodes[0].post(f"entry {k} ".ljust(50, "."), timestamp_ms=_TS_MS + k)
    feed = nodes[0].feed_id

    def held() -> int:
        return sum(node.store.latest_seq(feed) for node in nodes[1:])

    delivered = asyncio.Event()

    def appended(*_: object) -> None:
        if held() == 2 * entries:
            delivered.set()

    for node in nodes[1:]:
        node.add_append_listener(appended)

    emulator = LoRaEmulator(
        [EmulatedNode(name=n, driver="kiss") for n in _NAMES], params=_PARAMS, seed=seed
    )
    interfaces = [
        RadioInterface(node, _radio(emulator.port(name)), rng=random.Random(seed * 7919 + i))
        for i, (name, node) in enumerate(zip(_NAMES, nodes, strict=True))
    ]
    real_start = loop.time() - _skipped(loop)
    async with running_tasks(emulator.run, *(i.run for i in interfaces)):
        start = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delivered.wait(), _LIMIT_S)
        done_at = loop.time() - start
    try:
        return _figures(emulator, interfaces, entries, held(), done_at) | {
            "run_s": round(loop.time() - _skipped(loop) - real_start, 2)
        }
    finally:
        emulator.close()


def _skipped(loop: asyncio.AbstractEventLoop) -> float:
    return float(getattr(loop, "skipped_s", 0.0))


@contextlib.asynccontextmanager
async def running_tasks(
    *runs: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run each coroutine function as a task; cancel them all on the way out."""
    tasks = [asyncio.create_task(run()) for run in runs]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _figures(
    emulator: LoRaEmulator,
    interfaces: list[RadioInterface],
    entries: int,
    held: int,
    done_at: float,
) -> dict[str, object]:
    log = list(emulator.air_log)
    airtime = sum(r.duration_s for r in log)
    control = sum(i.airtime_s["control"] for i in interfaces)
    counted = sum(sum(i.airtime_s.values()) for i in interfaces)
    per_node = [
        duty_cycle_max([(r.start_s, r.duration_s) for r in log if r.node == name], 3600)
        for name in _NAMES
    ]
    stats = emulator.stats.values()
    return {
        "entries": entries,
        "receivers": 2,
        "delivered": round(held / (2 * entries), 4),
        "time_to_deliver_s": round(done_at, 1),
        "air_bytes_per_entry": round(sum(r.air_bytes for r in log) / max(held, 1), 1),
        "control_share": round(control / counted, 4) if counted else 0.0,
        "duty_cycle_max": round(max(per_node), 5),
        "transmissions": len(log),
        "airtime_s": round(airtime, 2),
        "collisions": sum(s.collisions for s in stats),
    }

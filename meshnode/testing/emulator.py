"""LoRa channel emulator: N nodes' real drivers talk through ptys to fake modems on one air.

Each node gets a pty; its daemon opens the slave (``port(name)``) with the real driver, and
a fake modem on the master speaks that driver's device protocol:

* ``kiss`` (RNode), ``e22`` (transparent mode) and ``rylr`` (REYAX AT commands): see
  testing/fakemodem.py for what each fake modem answers and what one packet is on the air.

The air: a packet of L bytes occupies it for ``time_on_air_s(params, L)`` of loop time, with
the preamble of the modem that sends it (RNode: at least 18 symbols and 24 ms; RYLR: as
AT+PARAMETER set it; E22: ``params``). Only nodes in ``hears`` (symmetric pairs; None:
everyone) are in range. A receiver loses a packet when it transmits during it (half duplex),
when another packet it hears overlaps it (both are lost: a collision, also across drivers),
or to seeded random ``loss``; nodes only decode packets from the same driver. A modem queues
packets the host sends faster than the air takes them. RNode and E22 listen before talk: a
packet waits while the air the modem hears is busy, then a random 0..16 symbols; a packet
that started less than 4 symbols ago is not detected yet (so near-simultaneous starts
collide). The RYLR does no carrier sense, as the real module.

The line to each host is lossy when asked: ``drop_bytes`` drops each byte the modem writes
with that probability, and ``noise_bytes_per_s`` writes bursts of 1..8 random bytes at
random times (Poisson), between the modem's writes. The host -> modem direction is clean.

Not modelled: signal strength, distance, capture effect, frequency or parameter mismatch
between nodes (settings are echoed, never compared), LoRa PHY CRC failures, E22 sub-packet
timing (UART gaps), UART baud rate pacing, duty-cycle enforcement inside modems, RNode's
flow control (READY) and multi-packet (split) frames. Real time: loop delays add jitter. ``stats``
counts per node what it sent and what it received or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tty
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from meshnode.radio.airtime import LoRaParams, time_on_air_s
from meshnode.testing.fakemodem import DRIVERS, Modem, RylrModem, Send, make_modem

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DRIVERS", "AirRecord", "EmulatedNode", "LoRaEmulator", "NodeStats", "main"]

log = logging.getLogger(__name__)

_AIR_LOG_RECORDS = 100_000
_CAD_SYMBOLS = 4  # a packet is detectable by carrier sense this long after it starts
_CSMA_SLOT_SYMBOLS = 16  # random wait after the air clears
_MAX_OUT_BYTES = 1 << 16  # bytes held for a host that does not read; more are dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatedNode:
    """One node on the emulated air: its name and which modem its driver talks to."""

    name: str
    driver: str  # "kiss" | "e22" | "rylr"

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {self.driver!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AirRecord:
    """One packet put on the air: by whom, when, for how long, and its PHY payload bytes."""

    node: str
    start_s: float
    duration_s: float
    air_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStats:
    """What one node's modem did: its transmissions, and what it received or missed."""

    airtime_s: float = 0.0  # on the air transmitting
    sent: int = 0  # packets put on the air
    delivered: int = 0  # packets received intact and written to the host
    collisions: int = 0  # packets in range lost to an overlapping one
    lost: int = 0  # packets in range lost to random loss
    half_duplex: int = 0  # packets in range missed while transmitting
    rejected: int = 0  # host sends refused (radio off, oversize, RYLR busy)
    noise_bytes: int = 0  # random bytes written to the host
    dropped_bytes: int = 0  # bytes for the host dropped on the line
    overflow_bytes: int = 0  # bytes for the host dropped because it did not read

    def add(self, **deltas: float) -> NodeStats:
        """These counters increased by ``deltas``."""
        return replace(self, **{k: getattr(self, k) + v for k, v in deltas.items()})


@dataclass(slots=True)
class _Port:
    """One node: its pty, modem, transmit queue and stats."""

    spec: EmulatedNode
    master: int
    slave: int
    modem: Modem
    queue: deque[Send] = field(default_factory=deque)
    tx_until: float = 0.0
    retry: asyncio.TimerHandle | None = None
    out: bytearray = field(default_factory=bytearray)
    writing: bool = False
    stats: NodeStats = field(default_factory=NodeStats)


@dataclass(slots=True)
class _Packet:
    """One packet on the air and its fate at every node in range (None: received so far)."""

    sender: str
    send: Send
    start: float
    end: float
    fate: dict[str, str | None]


class LoRaEmulator:
    """Fake modems on ptys sharing one emulated LoRa channel (see the module docstring)."""

    def __init__(
        self,
        nodes: list[EmulatedNode],
        *,
        params: LoRaParams,
        hears: set[tuple[str, str]] | None = None,
        loss: float = 0.0,
        noise_bytes_per_s: float = 0.0,
        drop_bytes: float = 0.0,
        seed: int = 1,
    ) -> None:
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        if hears is not None and not {n for pair in hears for n in pair} <= set(names):
            raise ValueError(f"hears names nodes that do not exist: {sorted(hears)}")
        for name, value in (("loss", loss), ("drop_bytes", drop_bytes)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if noise_bytes_per_s < 0:
            raise ValueError(f"noise_bytes_per_s must not be negative, got {noise_bytes_per_s}")
        self.params = params
        self.loss = loss
        self.noise_bytes_per_s = noise_bytes_per_s
        self.drop_bytes = drop_bytes
        self._rng = random.Random(seed)
        self._hears = None if hears is None else hears | {(b, a) for a, b in hears}
        self._air: list[_Packet] = []
        self.air_log: deque[AirRecord] = deque(maxlen=_AIR_LOG_RECORDS)  # the latest packets
        self._handles: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ports: dict[str, _Port] = {}
        try:
            for node in nodes:
                self._ports[node.name] = self._open(node)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open(node: EmulatedNode) -> _Port:
        master, slave = os.openpty()
        tty.setraw(slave)  # bytes pass unchanged and nothing echoes, before the host opens
        os.set_blocking(master, False)
        modem = make_modem(node.driver)
        return _Port(spec=node, master=master, slave=slave, modem=modem)

    def port(self, name: str) -> str:
        """The pty path the node's daemon opens."""
        return os.ttyname(self._ports[name].slave)

    @property
    def stats(self) -> dict[str, NodeStats]:
        """A snapshot of every node's counters."""
        return {name: p.stats for name, p in self._ports.items()}

    def hears(self, a: str, b: str) -> bool:
        """True when ``a`` and ``b`` are in range of each other."""
        return a != b and (self._hears is None or (a, b) in self._hears)

    async def run(self) -> None:
        """Serve every pty until cancelled."""
        loop = self._loop = asyncio.get_running_loop()
        for name, p in self._ports.items():
            loop.add_reader(p.master, self._readable, name)
            self._noise_later(name)
        try:
            await asyncio.Future()
        finally:
            self._detach()

    def _detach(self) -> None:
        """Stop watching the ptys and cancel every timer."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for p in self._ports.values():
            if p.master >= 0:
                loop.remove_reader(p.master)
                loop.remove_writer(p.master)
            p.writing, p.retry = False, None
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()

    def close(self) -> None:
        """Close every pty (once ``run`` has ended, or from its loop); ``stats`` stay readable."""
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                self._detach()  # closed from the loop before run's task finished
        for p in self._ports.values():
            for fd in (p.master, p.slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            p.master = p.slave = -1

    # Timers.

    def _later(self, delay_s: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        assert self._loop is not None
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._handles.discard(handle)
            callback()

        handle = self._loop.call_later(max(0.0, delay_s), fire)
        self._handles.add(handle)
        return handle

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # Host -> modem.

    def _readable(self, name: str) -> None:
        p = self._ports[name]
        try:
            data = os.read(p.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # the slave is ours too, so this is unexpected
            log.warning("%s: pty read failed: %s", name, exc)
            return
        for item in p.modem.feed(data):
            if isinstance(item, bytes):
                self._write(name, item)
            else:
                self._request(name, item)

    def _request(self, name: str, send: Send) -> None:
        p = self._ports[name]
        if send.air_bytes <= 0:
            p.stats = p.stats.add(rejected=1)
            return
        if send.busy_reply is not None and (p.queue or p.tx_until > self._now()):
            p.stats = p.stats.add(rejected=1)
            self._write(name, send.busy_reply)
            return
        self._write(name, send.reply)
        p.queue.append(send)
        self._kick(name)

    def _kick(self, name: str) -> None:
        """Start the next queued packet when the modem is free and the air allows."""
        p = self._ports[name]
        now = self._now()
        if not p.queue or p.tx_until > now or p.retry is not None:
            return
        if p.modem.carrier_sense:
            symbol_s = self.params.symbol_s
            heard = [
                pk.end
                for pk in self._air
                if self.hears(name, pk.sender)
                and pk.start + _CAD_SYMBOLS * symbol_s <= now < pk.end
            ]
            if heard:
                wait = max(heard) - now + self._rng.uniform(0, _CSMA_SLOT_SYMBOLS * symbol_s)
                p.retry = self._later(wait, lambda: self._retry(name))
                return
        self._transmit(name, p.queue.popleft(), now)

    def _retry(self, name: str) -> None:
        self._ports[name].retry = None
        self._kick(name)

    # The air.

    def _transmit(self, name: str, send: Send, now: float) -> None:
        p = self._ports[name]
        params = replace(self.params, preamble_symbols=p.modem.preamble_symbols(self.params))
        duration = time_on_air_s(params, min(send.air_bytes, 255))
        p.tx_until = now + duration
        p.stats = p.stats.add(sent=1, airtime_s=duration)
        self.air_log.append(
            AirRecord(node=name, start_s=now, duration_s=duration, air_bytes=send.air_bytes)
        )
        fate: dict[str, str | None] = {}
        for other in self._ports:
            if self.hears(name, other):
                fate[other] = "half_duplex" if self._ports[other].tx_until > now else None
        for pk in self._air:
            if pk.end <= now:
                continue  # ended; its end callback is due
            if name in pk.fate and pk.fate[name] is None:
                pk.fate[name] = "half_duplex"  # we started sending while receiving it
            for other in fate.keys() & pk.fate.keys():
                for packet_fate in (fate, pk.fate):
                    if packet_fate[other] is None:
                        packet_fate[other] = "collisions"
        packet = _Packet(sender=name, send=send, start=now, end=now + duration, fate=fate)
        self._air.append(packet)
        self._later(duration, lambda: self._air_end(packet))

    def _air_end(self, packet: _Packet) -> None:
        self._air.remove(packet)
        sender = self._ports[packet.sender]
        sender.tx_until = min(sender.tx_until, self._now())  # timers may fire a hair early
        for name, fate in packet.fate.items():
            p = self._ports[name]
            if fate is None and self._rng.random() < self.loss:
                fate = "lost"
            if fate is not None:
                p.stats = p.stats.add(**{fate: 1})
            elif p.spec.driver == sender.spec.driver and p.modem.radio_on:
                p.stats = p.stats.add(delivered=1)
                self._write(name, self._host_bytes(p, sender, packet.send.data))
        self._kick(packet.sender)

    @staticmethod
    def _host_bytes(p: _Port, sender: _Port, data: bytes) -> bytes:
        if isinstance(p.modem, RylrModem):
            assert isinstance(sender.modem, RylrModem)
            return p.modem.receive(data, sender_address=sender.modem.settings["ADDRESS"])
        return p.modem.receive(data)

    # Modem -> host, through the lossy line.

    def _write(self, name: str, data: bytes, *, noise: bool = False) -> None:
        p = self._ports[name]
        if not data:
            return
        if self.drop_bytes and not noise:
            kept = bytes(b for b in data if self._rng.random() >= self.drop_bytes)
            p.stats = p.stats.add(dropped_bytes=len(data) - len(kept))
            data = kept
        room = _MAX_OUT_BYTES - len(p.out)
        p.stats = p.stats.add(overflow_bytes=max(0, len(data) - room))
        p.out += data[: max(0, room)]
        self._flush(name)

    def _flush(self, name: str) -> None:
        p = self._ports[name]
        try:
            written = os.write(p.master, p.out) if p.out else 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            log.warning("%s: pty write failed: %s", name, exc)
            written = len(p.out)
        del p.out[:written]
        loop = self._loop
        if loop is None:
            return
        if p.out and not p.writing:
            loop.add_writer(p.master, self._flush, name)
            p.writing = True
        elif not p.out and p.writing:
            loop.remove_writer(p.master)
            p.writing = False

    def _noise_later(self, name: str) -> None:
        if self.noise_bytes_per_s <= 0:
            return
        bursts_per_s = self.noise_bytes_per_s / 4.5  # bursts of 1..8 bytes, 4.5 on average
        self._later(self._rng.expovariate(bursts_per_s), lambda: self._noise(name))

    def _noise(self, name: str) -> None:
        burst = self._rng.randbytes(self._rng.randint(1, 8))
        p = self._ports[name]
        p.stats = p.stats.add(noise_bytes=len(burst))
        self._write(name, burst, noise=True)
        self._noise_later(name)


# python -m meshnode.testing.emulator


def _parse_node(text: str) -> EmulatedNode:
    name, _, driver = text.partition(":")
    if not name or driver not in DRIVERS:
        raise argparse.ArgumentTypeError(f"want NAME:DRIVER with DRIVER in {DRIVERS}: {text!r}")
    return EmulatedNode(name=name, driver=driver)


def _parse_pair(text: str) -> tuple[str, str]:
    a, _, b = text.partition("-")
    if not a or not b:
        raise argparse.ArgumentTypeError(f"want A-B: {text!r}")
    return a, b


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m meshnode.testing.emulator",
        description="Emulated LoRa air on ptys: prints {name: pty} as JSON, runs until Ctrl-C,"
        " then prints per-node stats as JSON.",
    )
    p.add_argument("--node", type=_parse_node, action="append", required=True, help="a:kiss")
    p.add_argument("--hears", type=_parse_pair, action="append", help="a-b (default: all)")
    p.add_argument("--frequency-hz", type=int, default=869_525_000)
    p.add_argument("--bw", type=int, default=125_000, help="bandwidth in Hz (125000)")
    p.add_argument("--sf", type=int, default=9, help="spreading factor (9)")
    p.add_argument("--cr", type=int, default=5, help="coding rate 5..8 for 4/5..4/8 (5)")
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--noise-bytes-per-s", type=float, default=0.0)
    p.add_argument("--drop-bytes", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    return p


async def _serve(emulator: LoRaEmulator) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await emulator.run()


def main(argv: list[str] | None = None) -> int:
    """Run an emulator from the command line until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        params = LoRaParams(
            frequency_hz=args.frequency_hz,
            bandwidth_hz=args.bw,
            spreading_factor=args.sf,
            coding_rate=args.cr,
            tx_power_dbm=14,
        )
        emulator = LoRaEmulator(
            args.node,
            params=params,
            hears=set(args.hears) if args.hears else None,
            loss=args.loss,
            noise_bytes_per_s=args.noise_bytes_per_s,
            drop_bytes=args.drop_bytes,
            seed=args.seed,
        )
    except ValueError as exc:
        sys.stderr.write(f"emulator: {exc}\n")
        return 2
    try:
        ports = {node.name: emulator.port(node.name) for node in args.node}
        sys.stdout.write(json.dumps(ports) + "\n")
        sys.stdout.flush()
        asyncio.run(_serve(emulator))
        stats = {name: asdict(s) for name, s in emulator.stats.items()}
        sys.stdout.write(json.dumps(stats) + "\n")
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

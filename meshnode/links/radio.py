"""One [[radio]] interface in the daemon: serial port, driver, airtime gate, shared channel.

The reader turns device bytes into link packets (drivers.py), packets into messages
(radio/fragment.py) and hands them to the Channel core. The sender asks the Channel
for the next message only when the air is ours: the airtime budget allows it (a hard
check, radio/airtime.py) and the previous frame has had its time on the air; on a cable,
its wire time at the baud rate (8N1), so about one frame at most waits in the OS buffer
and the channel picks what goes next when the wire is free. A cable that loses bytes
gets small fragments and repairs of only those lost (radio/repair.py); its repair traffic
goes before any message. A device
that vanishes is logged, reopened with backoff, set up again, and the node runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from meshnode.core.channel import Channel, ChannelConfig
from meshnode.errors import LinkError
from meshnode.host.config import lora_params
from meshnode.host.eventlog import log_events
from meshnode.links.serialport import open_port
from meshnode.radio.airtime import REGIONS, AirtimeBudget, time_on_air_s
from meshnode.radio.drivers import make_driver
from meshnode.radio.fragment import (
    MIN_MTU_BYTES,
    Reassembler,
    fragment,
    max_payload,
    reassembly_key,
)
from meshnode.radio.repair import CableRepair

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from meshnode.core.node import Node
    from meshnode.host.config import RadioSection
    from meshnode.links.serialport import SerialPort

__all__ = ["RadioInterface"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 16 << 10
_TYPICAL_CABLE_FRAME_BYTES = 256  # an entry of a short post, framed
_PROBE_BYTES = 20  # a short control message: is there room for anything of a kind?
_ANSWER_TIMEOUT_S = 1.0  # an AT module answers a command within this
_AT_GUARD_S = 0.02  # margin on an AT module's airtime: the serial line and its parser
_SETTLE_S = 0.5  # for a device that echoes its settings to do so after setup
_REFUSED_WAIT_MAX_S = 300.0  # backoff cap for a device that keeps refusing its settings
_KISS_OVERHEAD_BYTES = 3  # two FENDs and the type byte around each packet on a cable


async def _wait_event(
    event: asyncio.Event, reader: asyncio.Task[None], timeout_s: float | None
) -> None:
    """Wait until ``event`` is set, the reader ends, or the timeout; clear the event."""
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait({waiter, reader}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        event.clear()


class _SetupRefused(Exception):
    """The device refused or did not confirm the settings meshnode wrote."""


class RadioInterface:
    """A serial cable or LoRa radio running the shared-channel protocol."""

    def __init__(self, node: Node, radio: RadioSection, *, rng: random.Random) -> None:
        self.radio = radio
        self.name = radio.name
        self.rng = rng
        self.driver = make_driver(radio)
        params = lora_params(radio) if radio.driver != "serial" else None
        if params is not None:
            params = replace(params, preamble_symbols=self.driver.preamble_symbols)
        self.params = params
        # A cable's wire time: 10 bit times a byte (8N1) at its baud; radios use airtime.
        self._wire_s_per_byte = 10 / radio.baud if radio.driver == "serial" else 0.0
        self.budget = (
            AirtimeBudget(REGIONS[radio.region], control_share=radio.control_share)
            if self.params is not None
            else None
        )
        self._mtu = self._fit_mtu(radio)
        frame_s = self._airtime_s(bytes(self._mtu))
        if radio.driver == "serial":  # a cable's MTU is large: time its timers by a typical frame
            frame_s = self._airtime_s(bytes(min(self._mtu, _TYPICAL_CABLE_FRAME_BYTES)))
        # Room to look for before asking the channel for a message of each kind: a short
        # control message, or a full data frame (so an entry is not popped to wait inside
        # the send, while the channel could still beacon that its entries are held).
        self._probe_s = {"control": self._airtime_s(bytes(_PROBE_BYTES)), "data": frame_s}
        config = ChannelConfig.for_link(
            frame_s=frame_s, mtu_bytes=max_payload(self._mtu), cable=radio.driver == "serial"
        )
        self.channel = Channel(node, config=config, rng=rng)
        self._reassembler = Reassembler(_MAX_MESSAGE_BYTES, timeout_s=max(30.0, 100 * frame_s))
        # A cable is point to point: a lossy one gets small fragments and repairs of them.
        self._repair = (
            CableRepair(
                frame_s=frame_s,
                mtu_bytes=self._mtu,
                overhead_bytes=_KISS_OVERHEAD_BYTES,
                max_message_bytes=_MAX_MESSAGE_BYTES,
            )
            if radio.driver == "serial"
            else None
        )
        self._wake = asyncio.Event()
        self._answered = asyncio.Event()
        self._message_id = rng.randrange(256)
        self.problem: str | None = None  # why the device is not in use, when it is not
        self.send_refused = 0  # sends the device answered with an error
        self.airtime_s = {"control": 0.0, "data": 0.0}  # on the air since start, by kind
        self._reader: asyncio.Task[None] | None = None
        self.state = "closed"
        self.on_receive: Callable[[], None] = lambda: None

    def _fit_mtu(self, radio: RadioSection) -> int:
        """The driver's MTU, cut so one packet stays under the region's dwell limit."""
        mtu = self.driver.packet_mtu
        dwell = REGIONS[radio.region].max_dwell_s if self.params is not None else None
        if dwell is None:
            return mtu
        while mtu > MIN_MTU_BYTES and self._airtime_s(bytes(mtu)) > dwell:
            mtu -= 1
        if mtu < self.driver.packet_mtu:
            log.info("%s: packets cut to %d bytes to stay under %g s each", self.name, mtu, dwell)
        return mtu

    def _airtime_s(self, packet: bytes) -> float:
        """Time ``packet`` takes on the air, or on a cable's wire at its baud."""
        params = self.params
        if params is None:
            return self._wire_s_per_byte * sum(len(w) for w in self.driver.encode(packet))
        return sum(time_on_air_s(params, n) for n in self.driver.air_sizes(packet))

    def poke(self) -> None:
        """Something changed in the node: the channel may have news to send."""
        self._wake.set()

    async def run(self) -> None:
        """Open the device (waiting for it), serve it, and start over when it vanishes."""
        loop = asyncio.get_running_loop()
        refused_wait_s = 1.0
        while True:
            self.state = "waiting for the device"
            port = await open_port(self.radio.port, self.radio.baud, name=self.name, rng=self.rng)
            self.state = "open"
            log.info("%s: %s open (%s)", self.name, self.radio.port, self.radio.driver)
            try:
                await self._serve(port, loop.time)
            except LinkError as exc:
                log.warning("%s: %s; reopening when it is back", self.name, exc)
                continue
            except _SetupRefused as exc:
                self.problem = str(exc)
                log.error(
                    "%s: %s; not transmitting, trying again in about %.0f s",
                    self.name,
                    exc,
                    refused_wait_s,
                )
            finally:
                port.close()
                self.state = "closed"
            self.state = "settings refused"
            await asyncio.sleep(refused_wait_s * self.rng.uniform(0.5, 1.0))
            refused_wait_s = min(_REFUSED_WAIT_MAX_S, refused_wait_s * 2)

    async def _serve(self, port: SerialPort, clock: Callable[[], float]) -> None:
        reader = self._reader = asyncio.create_task(self._read_loop(port, clock))
        try:
            await self._setup(port, reader)
            self.channel.start(clock())
            await self._send_loop(port, clock, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await reader

    async def _setup(self, port: SerialPort, reader: asyncio.Task[None]) -> None:
        """Write the driver's setup and check the device took it (raises _SetupRefused)."""
        driver = self.driver
        await asyncio.sleep(driver.open_settle_s)
        driver.take_answers()  # whatever a (re)booting device said is not an answer
        silent = 0
        for lines in (driver.setup, driver.setup_after):
            for line in lines():
                if driver.answers_commands:
                    silent += await self._command(port, line, reader) is None
                else:
                    await port.write(line)
                    await asyncio.sleep(driver.setup_gap_s)
        if not driver.answers_commands and driver.setup_gap_s:
            await asyncio.sleep(_SETTLE_S)  # for the echoes of the last settings
        if reader.done():
            reader.result()
        problems = driver.problems()
        if silent:
            problems.append(f"{silent} commands got no answer (is it this device, at this baud?)")
        if problems:
            raise _SetupRefused("the device did not take its settings: " + ", ".join(problems))
        self.problem = None

    async def _command(
        self, port: SerialPort, write: bytes, reader: asyncio.Task[None]
    ) -> bool | None:
        """Write one command line and wait for its answer: accepted, refused, or None."""
        loop = asyncio.get_running_loop()
        self.driver.take_answers()  # late answers to earlier lines are not this one's
        self._answered.clear()
        await port.write(write)
        deadline = loop.time() + _ANSWER_TIMEOUT_S
        while (left := deadline - loop.time()) > 0 and not reader.done():
            await _wait_event(self._answered, reader, left)
            answers = self.driver.take_answers()
            if answers:
                return answers[-1]
        return None

    async def _read_loop(self, port: SerialPort, clock: Callable[[], float]) -> None:
        while True:
            data = await port.read()
            for packet in self.driver.feed(data):
                if self._repair is not None:
                    self._deliver(self._repair.receive(packet, clock()), clock())
                    self._wake.set()  # a repair or a loss report may be due
                    continue
                # No sender on the link: fragments are told apart by their message id.
                message = self._reassembler.feed(reassembly_key(packet), packet, clock())
                self._deliver([] if message is None else [message], clock())
            if self.driver.answers_commands:
                self._answered.set()

    def _deliver(self, messages: list[bytes], now: float) -> None:
        for message in messages:
            self.channel.receive(message, now)
            log_events(self.channel.events())
            self.on_receive()
            self._wake.set()

    async def _send_urgent(self, port: SerialPort, now: float) -> bool:
        """Put a cable's repair traffic on the wire before any message; True if any."""
        if self._repair is None:
            return False
        packets = self._repair.take_urgent(now)
        self.channel.mending(self._repair.extra_delay_s)
        if self._repair.receiver.partials:  # a message is being mended: no WANT for it yet
            self.channel.arriving(now)
        for packet in packets:
            duration = self._airtime_s(packet)
            self.airtime_s["control"] += duration
            await self._put_on_air(port, packet, duration)
        return bool(packets)

    async def _send_loop(
        self, port: SerialPort, clock: Callable[[], float], reader: asyncio.Task[None]
    ) -> None:
        while not reader.done():
            now = clock()
            self.channel.handle_timer(now)
            log_events(self.channel.events())
            if await self._send_urgent(port, now):
                continue
            control_ok, data_ok = self._allowed(now)
            data_at = None
            if not data_ok and self.budget is not None:
                data_at = now + self.budget.wait_s(now, self._probe_s["data"], "data")
            tx = self.channel.poll_transmit(
                now, control_ok=control_ok, data_ok=data_ok, data_at=data_at
            )
            if tx is not None:
                await self._send(port, clock, tx.message, "control" if tx.control else "data")
                continue
            await self._sleep(self._next_wake_s(now), reader)
        reader.result()  # raises the reader's LinkError

    def _allowed(self, now: float) -> tuple[bool, bool]:
        """Is there room in the budget for a short control message, a full data frame?"""
        if self.budget is None:
            return True, True
        return (
            self.budget.allowed(now, self._probe_s["control"], "control"),
            self.budget.allowed(now, self._probe_s["data"], "data"),
        )

    def _next_wake_s(self, now: float) -> float:
        budget = self.budget

        def budget_wait_s(kind: str) -> float:
            return 0.0 if budget is None else budget.wait_s(now, self._probe_s[kind], kind)

        wake = self.channel.next_wake(now, budget_wait_s)
        repair_at = None if self._repair is None else self._repair.next_deadline()
        wakes = [t for t in (wake, repair_at) if t is not None]
        return max(0.0, min(wakes) - now) if wakes else math.inf

    async def _sleep(self, wait_s: float, reader: asyncio.Task[None]) -> None:
        if wait_s <= 0:
            await asyncio.sleep(0)
            return
        await _wait_event(self._wake, reader, None if math.isinf(wait_s) else wait_s)

    async def _send(
        self, port: SerialPort, clock: Callable[[], float], message: bytes, kind: str
    ) -> None:
        self._message_id = (self._message_id + 1) % 256
        mtu = self._mtu if self._repair is None else self._repair.mtu_bytes
        packets = fragment(message, mtu_bytes=mtu, message_id=self._message_id)
        if self._repair is not None:
            self._repair.sender.sent(self._message_id, packets)
        for packet in packets:
            duration = self._airtime_s(packet)
            if self.budget is not None:
                wait = self.budget.wait_s(clock(), duration, kind)
                if math.isinf(wait):
                    log.warning(
                        "%s: dropped a %s message the budget can never allow", self.name, kind
                    )
                    return
                if wait > 0:
                    await asyncio.sleep(wait)  # held until the budget allows it
                self.budget.record(clock(), duration, kind)
            self.airtime_s[kind] += duration
            await self._put_on_air(port, packet, duration)

    async def _put_on_air(self, port: SerialPort, packet: bytes, duration: float) -> None:
        """Write one link packet and wait out its time on the air (half duplex)."""
        loop = asyncio.get_running_loop()
        if not self.driver.answers_commands:
            start = loop.time()
            for write in self.driver.encode(packet):
                await port.write(write)
            await asyncio.sleep(max(0.0, duration - (loop.time() - start)))
            return
        assert self._reader is not None
        for write in self.driver.encode(packet):
            # The module sends once it has answered: its airtime counts from the answer.
            # (A module that answers only after sending costs one airtime more, never a clash.)
            for _ in range(2):
                answer = await self._command(port, write, self._reader)
                if answer is not False:
                    break
                self.send_refused += 1  # busy (+ERR=17): the last one is still on the air
                await asyncio.sleep(_AT_GUARD_S)
            await asyncio.sleep(duration + _AT_GUARD_S)

    def status(self) -> dict[str, object]:
        """JSON-ready state of this interface."""
        now = asyncio.get_running_loop().time()
        out: dict[str, object] = {
            "name": self.name,
            "driver": self.radio.driver,
            "port": self.radio.port,
            "state": self.state,
            "problem": self.problem,
            "send_refused": self.send_refused,
            **self.channel.status(),
            **self.driver.status(),
        }
        if self._repair is not None:
            out["link_repair"] = {
                "fragment_bytes": self._repair.mtu_bytes,
                "byte_loss_in": round(self._repair.receiver.meter.byte_loss, 5),
                "repairs_asked": self._repair.repairs_asked,
                "fragments_resent": self._repair.fragments_resent,
                "given_up": self._repair.receiver.given_up,
            }
        if self.budget is not None:
            limit = self.budget.limit_s
            out["region"] = self.radio.region
            out["airtime_used_s"] = round(self.budget.used_s(now), 3)
            out["airtime_limit_s"] = limit
            out["airtime_share"] = round(self.budget.used_share(now), 5)
            out["control_airtime_s"] = round(self.budget.control_used_s(now), 3)
        return out

"""One [[radio]] interface in the daemon: serial port, driver, airtime gate, shared channel.

The reader turns device bytes into link packets (drivers.py), packets into messages
(transports/fragment.py) and hands them to the Channel core. The sender asks the Channel
for the next message only when the air is ours: the airtime budget allows it (a hard
check, radio/airtime.py) and the previous frame has had its time on the air. A device
that vanishes is logged, reopened with backoff, set up again, and the node runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from meshnode.channel import Channel, ChannelConfig
from meshnode.config import lora_params
from meshnode.errors import LinkError
from meshnode.radio.airtime import REGIONS, AirtimeBudget, time_on_air_s
from meshnode.radio.drivers import make_driver
from meshnode.transports.fragment import Reassembler, fragment, max_payload
from meshnode.transports.serialport import open_port

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from meshnode.config import RadioSection
    from meshnode.node import Node
    from meshnode.transports.serialport import SerialPort

__all__ = ["RadioInterface"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 16 << 10
_RNODE_HEADER_BYTES = 1  # RNode puts one byte of its own before each LoRa payload
_PROBE_BYTES = 20  # a short control message: is there room for anything of a kind?


class RadioInterface:
    """A serial cable or LoRa radio running the shared-channel protocol."""

    def __init__(self, node: Node, radio: RadioSection, *, rng: random.Random) -> None:
        self.radio = radio
        self.name = radio.name
        self.rng = rng
        self.driver = make_driver(radio)
        self.params = lora_params(radio) if radio.driver != "serial" else None
        self.budget = (
            AirtimeBudget(REGIONS[radio.region], control_share=radio.control_share)
            if self.params is not None
            else None
        )
        self._mtu = self.driver.packet_mtu
        frame_s = self._airtime_s(self._mtu)
        self._probe_s = self._airtime_s(_PROBE_BYTES)
        config = ChannelConfig.for_link(frame_s=frame_s, mtu_bytes=max_payload(self._mtu))
        self.channel = Channel(node, config=config, rng=rng)
        self._reassembler = Reassembler(_MAX_MESSAGE_BYTES, timeout_s=max(30.0, 100 * frame_s))
        self._wake = asyncio.Event()
        self._message_id = 0
        self.state = "closed"
        self.on_receive: Callable[[], None] = lambda: None

    def _airtime_s(self, packet_bytes: int) -> float:
        if self.params is None:
            return 0.0
        return time_on_air_s(self.params, min(255, packet_bytes + _RNODE_HEADER_BYTES))

    def poke(self) -> None:
        """Something changed in the node: the channel may have news to send."""
        self._wake.set()

    async def run(self) -> None:
        """Open the device (waiting for it), serve it, and start over when it vanishes."""
        loop = asyncio.get_running_loop()
        while True:
            self.state = "waiting for the device"
            port = await open_port(self.radio.port, self.radio.baud, name=self.name, rng=self.rng)
            self.state = "open"
            log.info("%s: %s open (%s)", self.name, self.radio.port, self.radio.driver)
            try:
                await self._serve(port, loop.time)
            except LinkError as exc:
                log.warning("%s: %s; reopening when it is back", self.name, exc)
            finally:
                port.close()
                self.state = "closed"

    async def _serve(self, port: SerialPort, clock: Callable[[], float]) -> None:
        for setup in self.driver.setup():
            await port.write(setup)
            if self.driver.setup_gap_s:
                await asyncio.sleep(self.driver.setup_gap_s)
        self.channel.start(clock())
        reader = asyncio.create_task(self._read_loop(port, clock))
        try:
            await self._send_loop(port, clock, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await reader

    async def _read_loop(self, port: SerialPort, clock: Callable[[], float]) -> None:
        while True:
            data = await port.read()
            for packet in self.driver.feed(data):
                message = self._reassembler.feed(b"", packet, clock())
                if message is not None:
                    self.channel.receive(message, clock())
                    self.on_receive()
                    self._wake.set()

    async def _send_loop(
        self, port: SerialPort, clock: Callable[[], float], reader: asyncio.Task[None]
    ) -> None:
        while not reader.done():
            now = clock()
            self.channel.handle_timer(now)
            control_ok, data_ok = self._allowed(now)
            tx = self.channel.poll_transmit(now, control_ok=control_ok, data_ok=data_ok)
            if tx is not None:
                await self._send(port, clock, tx.message, "control" if tx.control else "data")
                continue
            await self._sleep(self._next_wake_s(now, control_ok, data_ok), reader)
        reader.result()  # raises the reader's LinkError

    def _allowed(self, now: float) -> tuple[bool, bool]:
        """Is there room in the budget for a short message of each kind?"""
        if self.budget is None:
            return True, True
        return (
            self.budget.allowed(now, self._probe_s, "control"),
            self.budget.allowed(now, self._probe_s, "data"),
        )

    def _next_wake_s(self, now: float, control_ok: bool, data_ok: bool) -> float:
        deadline = self.channel.next_deadline()
        wait = math.inf if deadline is None else max(0.0, deadline - now)
        blocked = [k for k, ok in (("control", control_ok), ("data", data_ok)) if not ok]
        if self.budget is not None and blocked and deadline is not None:
            # Something may be due that the budget holds back: sleep until it allows.
            budget = self.budget
            wait = max(wait, min(budget.wait_s(now, self._probe_s, k) for k in blocked))
        return wait

    async def _sleep(self, wait_s: float, reader: asyncio.Task[None]) -> None:
        if wait_s <= 0:
            await asyncio.sleep(0)
            return
        waiter = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait(
                {waiter, reader},
                timeout=None if math.isinf(wait_s) else wait_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
            self._wake.clear()

    async def _send(
        self, port: SerialPort, clock: Callable[[], float], message: bytes, kind: str
    ) -> None:
        self._message_id = (self._message_id + 1) % 256
        for packet in fragment(message, mtu_bytes=self._mtu, message_id=self._message_id):
            duration = self._airtime_s(len(packet))
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
            for write in self.driver.encode(packet):
                await port.write(write)
            if duration:
                await asyncio.sleep(duration)  # half duplex: the frame is on the air

    def status(self) -> dict[str, object]:
        """JSON-ready state of this interface."""
        now = asyncio.get_running_loop().time()
        out: dict[str, object] = {
            "name": self.name,
            "driver": self.radio.driver,
            "port": self.radio.port,
            "state": self.state,
            **self.channel.status(),
            **self.driver.status(),
        }
        if self.budget is not None:
            limit = self.budget.limit_s
            out["region"] = self.radio.region
            out["airtime_used_s"] = round(self.budget.used_s(now), 3)
            out["airtime_limit_s"] = limit
            out["airtime_share"] = round(self.budget.used_share(now), 5)
            out["control_airtime_s"] = round(self.budget.control_used_s(now), 3)
        return out

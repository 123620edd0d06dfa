"""Deterministic radio simulator: nodes running the real Channel core on one shared air.

A transmission of ``n`` bytes occupies the air for ``airtime_s(n)``; every node in range
of the sender hears it, unless the receiver was itself transmitting (half duplex),
another transmission it can hear overlapped it (collision), or the seeded random loss
took it. Who hears whom is a set of pairs, so hidden nodes (A and C both hear B, not
each other) are one line. A node waits for a clear channel before it sends (listen
before talk, which hidden nodes defeat as on real radios) and, when it has a budget,
for its airtime budget to allow the transmission. Fake clock; a seed replays a run.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from meshnode.codec.content import ContactAction
from meshnode.core.channel import Channel, ChannelConfig, Transmission
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Air", "AirLog", "Budget"]

_TIMER, _TX_END = 0, 1
_TS_MS = 1_700_000_000_000
_PROBE_BYTES = 20  # a short control message: is there room for anything of a kind?


class Budget(Protocol):
    """The transmit gate of one node (radio/airtime.py's AirtimeBudget fits)."""

    def wait_s(self, now: float, duration_s: float, kind: str) -> float:
        """Seconds until this transmission fits (0: now)."""
        ...

    def record(self, now: float, duration_s: float, kind: str) -> None:
        """Count a transmission; raises when it does not fit."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AirLog:
    """One transmission, for figures."""

    sender: int
    start: float
    duration_s: float
    size: int
    control: bool


@dataclass(slots=True)
class _Radio:
    node: Node
    channel: Channel
    budget: Budget | None
    tx_until: float = 0.0
    wake_at: float | None = None
    held: Transmission | None = None
    receiving: list[tuple[float, float, int, bytes]] = field(default_factory=list)


class Air:
    """N nodes on one channel."""

    def __init__(
        self,
        n: int,
        *,
        airtime_s: Callable[[int], float],
        hears: set[tuple[int, int]] | None = None,
        loss: float = 0.0,
        seed: int = 1,
        config: ChannelConfig | None = None,
        budget: Callable[[], Budget] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.airtime_s = airtime_s
        self.loss = loss
        self.now = 0.0
        self.log: list[AirLog] = []
        self.dropped = 0
        self._queue: list[tuple[float, int, int, tuple[object, ...]]] = []
        self._count = itertools.count()
        pairs = hears if hears is not None else {(a, b) for a in range(n) for b in range(n)}
        self._hears = {(a, b) for a, b in pairs if a != b} | {(b, a) for a, b in pairs if a != b}
        self.radios: list[_Radio] = []
        self.config = config or ChannelConfig()
        for i in range(n):
            who = Identity(bytes([0x40 + i]) * 32)
            node = Node(
                who,
                network_key=DEFAULT_NETWORK_KEY,
                store=MemoryStore(),
                rng=random.Random(seed * 1000 + i),
            )
            channel = Channel(node, config=self.config, rng=random.Random(seed * 7919 + i))
            self.radios.append(_Radio(node, channel, budget() if budget else None))
        for i, radio in enumerate(self.radios):
            radio.channel.start(0.0)
            self._arm(i)

    def node(self, i: int) -> Node:
        """The node of radio ``i``."""
        return self.radios[i].node

    def follow(self, i: int, j: int) -> None:
        """Node i follows node j."""
        self.node(i).set_contact(ContactAction.FOLLOW, self.node(j).feed_id, timestamp_ms=_TS_MS)

    def publish(self, i: int, text: str) -> None:
        """Node i posts (at the current time)."""
        self.node(i).post(text, timestamp_ms=_TS_MS + int(self.now * 1000))
        self._arm(i)

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``t``."""
        self._push(t, _TIMER, (-1, action))

    # -- the event loop -------------------------------------------------------------------

    def _push(self, t: float, kind: int, data: tuple[object, ...]) -> None:
        heapq.heappush(self._queue, (t, next(self._count), kind, data))

    def _arm(self, i: int) -> None:
        radio = self.radios[i]
        deadline = radio.channel.next_wake(self.now, lambda kind: self._budget_wait(radio, kind))
        if deadline is None:
            return
        at = max(deadline, self.now)
        if math.isinf(at):
            return
        if radio.wake_at is None or at < radio.wake_at:
            radio.wake_at = at
            self._push(at, _TIMER, (i, None))

    def _busy_until(self, i: int) -> float:
        """End of the last transmission node ``i`` can hear that is still on the air."""
        ends = [end for start, end, sender, _ in self.radios[i].receiving if end > self.now]
        return max(ends, default=0.0)

    def _wake(self, i: int) -> None:
        radio = self.radios[i]
        radio.wake_at = None
        radio.channel.handle_timer(self.now)
        blocked = max(radio.tx_until, self._busy_until(i))
        if blocked > self.now:
            radio.wake_at = blocked + self.rng.uniform(0, 0.05)
            self._push(radio.wake_at, _TIMER, (i, None))
            return
        self._transmit(i)
        if self.radios[i].held is None:
            self._arm(i)

    def _room(self, radio: _Radio, kind: str) -> bool:
        """True when the budget has room for at least a short message of this kind."""
        return self._budget_wait(radio, kind) == 0

    def _transmit(self, i: int) -> None:
        radio = self.radios[i]
        tx = radio.held
        if tx is None:
            control_ok, data_ok = self._room(radio, "control"), self._room(radio, "data")
            data_at = None if data_ok else self.now + self._budget_wait(radio, "data")
            tx = radio.channel.poll_transmit(
                self.now, control_ok=control_ok, data_ok=data_ok, data_at=data_at
            )
            if tx is None:
                return
        kind = "control" if tx.control else "data"
        duration = self.airtime_s(len(tx.message))
        radio.held = None
        if radio.budget is not None:
            wait = radio.budget.wait_s(self.now, duration, kind)
            if math.isinf(wait):
                self.dropped += 1  # longer than the budget could ever allow
                return
            if wait > 0:
                radio.held = tx  # it goes as soon as the budget allows
                self._wake_later(i, wait)
                return
            radio.budget.record(self.now, duration, kind)
        radio.tx_until = self.now + duration
        self.log.append(
            AirLog(
                sender=i,
                start=self.now,
                duration_s=duration,
                size=len(tx.message),
                control=tx.control,
            )
        )
        for j in range(len(self.radios)):
            if (i, j) in self._hears:
                self.radios[j].receiving.append((self.now, radio.tx_until, i, tx.message))
        self._push(radio.tx_until, _TX_END, (i, tx.message))

    def _budget_wait(self, radio: _Radio, kind: str) -> float:
        if radio.budget is None:
            return 0.0
        return radio.budget.wait_s(self.now, self._probe_s(kind), kind)

    def _probe_s(self, kind: str) -> float:
        """Room to look for: a short control message, or a full data frame (as the daemon)."""
        return self.airtime_s(self.config.mtu_bytes if kind == "data" else _PROBE_BYTES)

    def _wake_later(self, i: int, wait_s: float) -> None:
        if math.isinf(wait_s):
            return
        radio = self.radios[i]
        radio.wake_at = self.now + wait_s
        self._push(radio.wake_at, _TIMER, (i, None))

    def _tx_end(self, sender: int, message: bytes) -> None:
        start = self.now - self.airtime_s(len(message))
        for j, radio in enumerate(self.radios):
            if (sender, j) not in self._hears:
                continue
            mine = [r for r in radio.receiving if r[2] == sender and r[3] is message]
            others = [
                r for r in radio.receiving if r[2] != sender and r[1] > start and r[0] < self.now
            ]
            radio.receiving = [r for r in radio.receiving if r[1] > self.now]
            if not mine or others or radio.tx_until > start:
                continue  # a collision, or we were transmitting (half duplex)
            if self.rng.random() < self.loss:
                continue
            radio.channel.receive(message, self.now)
            self._arm(j)
        self._arm(sender)

    def step(self) -> bool:
        """Process one event; False when nothing is left."""
        if not self._queue:
            return False
        t, _, kind, data = heapq.heappop(self._queue)
        self.now = max(self.now, t)
        if kind == _TX_END:
            sender, message = data
            assert isinstance(sender, int)
            assert isinstance(message, bytes)
            self._tx_end(sender, message)
            return True
        i, action = data
        assert isinstance(i, int)
        if action is not None:
            assert callable(action)
            action()
            for j in range(len(self.radios)):
                self._arm(j)
        else:
            wake_at = self.radios[i].wake_at
            if wake_at is not None and wake_at <= t:
                self._wake(i)
        return True

    def run_until(self, done: Callable[[], bool], limit_s: float) -> bool:
        """Run until ``done()`` or ``limit_s`` of simulated time; returns done()."""
        while not done() and self.now <= limit_s and self.step():
            pass
        return done()

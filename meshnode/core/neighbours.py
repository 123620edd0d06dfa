"""The neighbours a shared channel has heard, and how often strangers may move its timers.

Channel messages are not signed (codec/channel.py): anyone in range may send a BEACON,
WANT or HAVE under any short id, network tag and digest. A forger can therefore make us
believe in neighbours that do not exist, and, since a new neighbour or a changed digest
resets our Trickle timers (RFC 6206), make us beacon and ask at the shortest interval,
spending the control airtime our real neighbours need. It cannot make us store anything
(entries are signed and checked), nor send past the airtime budget (a hard gate).

So this table is capped at MAX_NEIGHBOURS: a newcomer replaces, among those that never
gave us an entry we stored, the one heard longest ago (only when every neighbour has, the
one heard longest ago). And a message may reset our timers only within an allowance: a
neighbour that delivered entries at most once per ``proven_gap_s`` (a real node beacons
no more often than that), everyone else together _STRANGER_RESET_BURST at once and then
one per ``stranger_every_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_NEIGHBOURS", "Neighbour", "Neighbours"]

# Neighbours kept: a LoRa channel of a village rarely has more than a few dozen nodes in
# range; a flood of forged short ids cannot grow memory past this.
MAX_NEIGHBOURS = 64
_STRANGER_RESET_BURST = 2  # new neighbours heard together (a box and its repeater) both count


@dataclass(slots=True)
class Neighbour:
    """One short id heard on the channel."""

    net_ok: bool  # its beacon named our network
    digest: bytes  # its latest clock digest (b"" until it beacons)
    heard_at: float
    delivered: int = 0  # entries from it that verified and were stored
    reset_at: float = -math.inf  # when it last reset our timers


class Neighbours:
    """Short id -> Neighbour, capped, most recently heard last; and the reset allowance."""

    def __init__(
        self, *, proven_gap_s: float, stranger_every_s: float, limit: int = MAX_NEIGHBOURS
    ) -> None:
        self.limit = limit
        self.proven_gap_s = proven_gap_s
        self.stranger_every_s = stranger_every_s
        self.evicted = 0  # neighbours forgotten to make room
        self.resets_refused = 0  # timer resets not allowed
        self._table: dict[bytes, Neighbour] = {}
        self._tokens = float(_STRANGER_RESET_BURST)
        self._tokens_at = -math.inf

    def get(self, src: bytes) -> Neighbour | None:
        """The neighbour with this short id, if kept."""
        return self._table.get(src)

    def __len__(self) -> int:
        return len(self._table)

    def ids(self, *, net_ok: bool = True) -> list[bytes]:
        """Short ids of the neighbours kept (of our network, unless ``net_ok`` is False)."""
        return [src for src, n in self._table.items() if n.net_ok or not net_ok]

    def heard(self, src: bytes, *, net_ok: bool, digest: bytes, now: float) -> Neighbour:
        """A beacon from ``src``: record it (making room if need be)."""
        neighbour = self._table.pop(src, None)
        if neighbour is None:
            self._make_room()
            neighbour = Neighbour(net_ok=net_ok, digest=digest, heard_at=now)
        neighbour.net_ok, neighbour.digest, neighbour.heard_at = net_ok, digest, now
        self._table[src] = neighbour
        return neighbour

    def delivered(self, src: bytes, now: float, *, stored: bool) -> None:
        """An entry from ``src`` verified under our network key (``stored``: it was new)."""
        neighbour = self._table.get(src)
        if neighbour is None:
            self._make_room()
            neighbour = self._table[src] = Neighbour(net_ok=True, digest=b"", heard_at=now)
        if stored:
            neighbour.delivered += 1

    def may_reset(self, src: bytes, now: float) -> bool:
        """May a message from ``src`` reset our timers now? (Counts it when it may.)"""
        neighbour = self._table.get(src)
        if neighbour is not None and neighbour.delivered:
            if now - neighbour.reset_at < self.proven_gap_s:
                self.resets_refused += 1
                return False
            neighbour.reset_at = now
            return True
        elapsed = now - self._tokens_at
        self._tokens = min(
            float(_STRANGER_RESET_BURST), self._tokens + elapsed / self.stranger_every_s
        )
        self._tokens_at = now
        if self._tokens < 1:
            self.resets_refused += 1
            return False
        self._tokens -= 1
        return True

    def _make_room(self) -> None:
        if len(self._table) < self.limit:
            return
        victim = next((s for s, n in self._table.items() if not n.delivered), None)
        if victim is None:
            victim = next(iter(self._table))
        del self._table[victim]
        self.evicted += 1

"""Who gets a TCP connection slot: reserved room, a cap per address, and idle eviction.

Pure bookkeeping (no sockets, ``now`` passed in), used by ``links.py``. The rules:

* At most ``max_links`` authenticated links in all. Inbound *strangers* (peers that are
  neither followed nor configured) hold at most ``max_links - reserved`` of them, so an
  outbound dial, a followed peer or a configured peer always finds room.
* One address (an IPv4 address, or an IPv6 /64, which one host usually owns whole) has at
  most ``per_address`` handshakes in progress (a new one drops its oldest: a real
  handshake takes milliseconds), and its strangers at most ``per_address`` links. Who a
  peer is shows only once its handshake is done: a followed or configured peer behind the
  same address (a NAT) is then let in, and is not counted.
* A link that carried no entry either way for ``evict_idle_s`` may be evicted when a slot
  is needed: strangers' links first, the idlest first. Followed and configured peers are
  never evicted, and a stranger may only evict another stranger.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.types import PeerId

__all__ = ["DEFAULT_EVICT_IDLE_S", "Admission", "SlotLimits", "Slots", "address_key"]

# Two minutes without an entry either way: longer than a first sync's opening (HELLO,
# clocks, the first pushes) takes even on slow Wi-Fi, short enough that a flood of silent
# strangers cannot hold the stranger room for long.
DEFAULT_EVICT_IDLE_S = 120.0
_IPV6_PREFIX = 64  # one host's share of an IPv6 network: SLAAC hands out whole /64s


def address_key(host: str) -> str:
    """The unit the per-address cap counts: an IPv4 address, or an IPv6 /64 prefix."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP address (a unix socket in tests): count it as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotLimits:
    """The limits on connection slots (see the module docstring)."""

    max_links: int = 64
    reserved: int = 16
    per_address: int = 8
    evict_idle_s: float = DEFAULT_EVICT_IDLE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """May a new link attach: ``evict`` names a link to close first; ``reason`` if refused."""

    ok: bool
    evict: PeerId | None = None
    reason: str = ""


@dataclass(slots=True)
class _Slot:
    address: str  # the address key for inbound links; "" for the ones we dialed
    useful_at: float  # when it last carried an entry (or attached)


class Slots:
    """The links' slots and the inbound handshakes per address; ``protected(peer)`` is
    True for followed and configured peers."""

    def __init__(self, limits: SlotLimits, protected: Callable[[PeerId], bool]) -> None:
        self.limits = limits
        self.protected = protected
        self.links: dict[PeerId, _Slot] = {}
        self._handshakes: dict[str, int] = {}  # in progress, by address key

    # -- before the handshake -----------------------------------------------------------

    def handshake_refusal(self, now: float) -> str:
        """Why an inbound connection may not even start a handshake: no slot could take it."""
        if len(self.links) >= self.limits.max_links and self._victim(now, any_kind=True) is None:
            return f"{len(self.links)} links open (lan.max_connections)"
        return ""

    def handshakes_from(self, address: str) -> int:
        """Handshakes in progress from ``address``."""
        return self._handshakes.get(address, 0)

    def handshake_started(self, address: str) -> None:
        """Count a handshake in progress from ``address``."""
        self._handshakes[address] = self._handshakes.get(address, 0) + 1

    def handshake_ended(self, address: str) -> None:
        """The handshake from ``address`` ended, either way."""
        left = self._handshakes.get(address, 0) - 1
        if left > 0:
            self._handshakes[address] = left
        else:
            self._handshakes.pop(address, None)

    # -- links ----------------------------------------------------------------------------

    def admit(self, peer: PeerId, *, address: str | None, now: float) -> Admission:
        """May ``peer`` take a slot (``address``: the key of an inbound link, None: dialed)."""
        limits = self.limits
        if address is None or self.protected(peer):
            if len(self.links) < limits.max_links:
                return Admission(ok=True)
            victim = self._victim(now, any_kind=True)
            if victim is None:
                return Admission(ok=False, reason=self._full_reason())
            return Admission(ok=True, evict=victim)
        same = self._strangers(address)
        if len(same) >= limits.per_address:
            return Admission(
                ok=False,
                reason=f"{len(same)} links from {address} (lan.max_connections_per_address)",
            )
        strangers = len(self._strangers())
        room = limits.max_links - limits.reserved
        if strangers < room and len(self.links) < limits.max_links:
            return Admission(ok=True)
        victim = self._victim(now, any_kind=False)
        if victim is None:
            reason = (
                f"{strangers} of {room} links for peers not followed are taken, none idle "
                f"(lan.reserved_share)"
                if strangers >= room
                else self._full_reason()
            )
            return Admission(ok=False, reason=reason)
        return Admission(ok=True, evict=victim)

    def attached(self, peer: PeerId, *, address: str | None, now: float) -> None:
        """``peer`` took a slot."""
        self.links[peer] = _Slot(address=address or "", useful_at=now)

    def detached(self, peer: PeerId) -> None:
        """``peer`` gave its slot back."""
        self.links.pop(peer, None)

    def useful(self, peer: PeerId, now: float) -> None:
        """``peer``'s link carried an entry: it is not idle."""
        slot = self.links.get(peer)
        if slot is not None:
            slot.useful_at = now

    def room_to_dial(self, now: float) -> bool:
        """True when a link we dial would find a slot (free, or one to evict)."""
        return (
            len(self.links) < self.limits.max_links or self._victim(now, any_kind=True) is not None
        )

    # -- the order of eviction ------------------------------------------------------------

    def _strangers(self, address: str | None = None) -> list[PeerId]:
        return [
            peer
            for peer, slot in self.links.items()
            if slot.address
            and (address is None or slot.address == address)
            and not self.protected(peer)
        ]

    def _victim(self, now: float, *, any_kind: bool) -> PeerId | None:
        """The idlest evictable link: inbound strangers first, then (``any_kind``) links we
        dialed to peers that are not protected."""
        idle_before = now - self.limits.evict_idle_s
        best: tuple[bool, float, PeerId] | None = None
        for peer, slot in self.links.items():
            if slot.useful_at > idle_before or (not slot.address and not any_kind):
                continue
            if self.protected(peer):
                continue
            rank = (not slot.address, slot.useful_at, peer)
            if best is None or rank < best:
                best = rank
        return None if best is None else best[2]

    def _full_reason(self) -> str:
        return f"{len(self.links)} links open, none idle (lan.max_connections)"

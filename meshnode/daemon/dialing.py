"""Dialing out: static peers from the config and peers mDNS found, redialed with backoff.

Each peer address gets one dialer task that keeps a link to it, redialing with a
jittered backoff (``reconnect_delay_s``). mDNS adds at most _MAX_MDNS_TARGETS peers to dial
and forgets one after _MDNS_GIVE_UP failures, so forged announcements cannot fill the node
with dialers. A static peer in the config keeps its address whatever mDNS says.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.daemon.links import peer_name
from meshnode.errors import LinkError
from meshnode.host.address import PeerAddress
from meshnode.links.tcp import dial, query_key
from meshnode.types import FeedId, PeerId

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Coroutine
    from typing import Any

    from meshnode.core.node import Node
    from meshnode.daemon.links import LinkTable
    from meshnode.links.discovery import PeerSeen
    from meshnode.links.tcp import TcpSettings
    from meshnode.secure.identity import Identity

__all__ = ["Dialer", "Target", "reconnect_delay_s"]

log = logging.getLogger(__name__)

_MAX_MDNS_TARGETS = 64
_MDNS_GIVE_UP = 5


def reconnect_delay_s(failures: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Backoff before the next dial: doubling from ``min_s`` up to ``max_s``, jittered 50-100%."""
    base = min(max_s, min_s * 2 ** min(max(failures - 1, 0), 30))
    return float(base * rng.uniform(0.5, 1.0))


class _ThisNode(Exception):
    """A peer address that leads back to this node."""


@dataclass(slots=True)
class Target:
    """A peer we keep dialing."""

    address: PeerAddress
    source: str
    failures: int = 0
    last_error: str = ""


def _peer_of(target: Target) -> PeerId | None:
    return None if target.address.feed_id is None else PeerId(target.address.feed_id)


class Dialer:
    """One dialer task per peer address, each keeping a link to its peer in ``table``.

    ``spawn(name, factory)`` runs ``factory()`` as a task that is restarted when it fails;
    ``second_dialer_delay_s`` is how long the larger id of a pair found by mDNS waits.
    """

    def __init__(
        self,
        node: Node,
        identity: Identity,
        table: LinkTable,
        *,
        tcp: TcpSettings,
        reconnect_s: tuple[float, float],
        rng: random.Random,
        spawn: Callable[[str, Callable[[], Coroutine[Any, Any, None]]], None],
        second_dialer_delay_s: float,
    ) -> None:
        self.node = node
        self.identity = identity
        self.table = table
        self.tcp = tcp
        self.reconnect_s = reconnect_s
        self.rng = rng
        self.spawn = spawn
        self.second_dialer_delay_s = second_dialer_delay_s
        self.targets: dict[str, Target] = {}
        self._dialing = 0

    def configured(self, peer: PeerId) -> bool:
        """True when ``peer`` is a peer from the config (or the command line)."""
        return any(t.source == "config" and _peer_of(t) == peer for t in self.targets.values())

    def on_seen(self, seen: PeerSeen) -> None:
        """mDNS found a peer: dial it, or follow it to its new address."""
        address = PeerAddress(host=seen.host, port=seen.port, feed_id=seen.feed_id)
        for target in self.targets.values():
            if target.address.feed_id == seen.feed_id:
                if target.source == "mdns":
                    target.address = address  # it may have moved; static peers stay put
                return
        if sum(t.source == "mdns" for t in self.targets.values()) >= _MAX_MDNS_TARGETS:
            log.debug("ignoring %s: %d peers from mDNS already", address, _MAX_MDNS_TARGETS)
            return
        self.add_target(address, seen.source)

    def add_target(self, address: PeerAddress, source: str) -> None:
        """Start dialing ``address`` unless it is dialed already."""
        key = peer_name(PeerId(address.feed_id)) if address.feed_id else str(address)
        if key in self.targets:
            return
        target = Target(address=address, source=source)
        self.targets[key] = target

        async def dial_loop() -> None:
            await self._dial_loop(target)
            self.targets.pop(key, None)

        self.spawn(f"dialer for {address}", dial_loop)

    async def _dial_loop(self, target: Target) -> None:
        """Keep a link to ``target``; return when it turns out to be us, or mDNS lost it."""
        min_s, max_s = self.reconnect_s
        peer = _peer_of(target)
        # Both sides of a pair discover each other at once: the larger id waits a little,
        # so usually one connection is made and the tie-break has nothing to do.
        second = target.source == "mdns" and peer is not None and peer < self.node.feed_id
        delay = self.second_dialer_delay_s if second else 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            delay = reconnect_delay_s(1, min_s, max_s, self.rng)
            peer = _peer_of(target)
            if peer is not None and peer in self.table.links:
                await self.table.link_ended[peer].wait()
                continue
            if peer is not None and self.table.banned_for(peer):
                delay = self.table.banned_for(peer)
                continue
            if self.table.full():
                continue  # our own limit (no slot free or idle): not the peer's fault
            try:
                await self._dial_once(target)
                target.failures = 0
            except _ThisNode:
                log.info("%s is this node itself; not dialing it", target.address)
                target.last_error = "this node itself"
                return
            except LinkError as exc:
                target.failures += 1
                target.last_error = str(exc)
                if target.source == "mdns" and target.failures >= _MDNS_GIVE_UP:
                    log.info("giving up on %s: %s", target.address, exc)
                    return  # it comes back if it announces itself again
                delay = reconnect_delay_s(target.failures, min_s, max_s, self.rng)
                log.info("cannot reach %s: %s; retrying in %.0f s", target.address, exc, delay)

    async def _dial_once(self, target: Target) -> None:
        a = target.address
        self._dialing += 1
        try:
            if a.feed_id is None:
                key = await query_key(
                    a.host,
                    a.port,
                    network_key=self.node.network_key,
                    timeout_s=self.tcp.handshake_timeout_s,
                )
                if key == PeerId(self.node.feed_id):
                    raise _ThisNode
                log.info("%s is %s (learned on first contact)", a, peer_name(key))
                target.address = a = PeerAddress(host=a.host, port=a.port, feed_id=FeedId(key))
            assert a.feed_id is not None
            if a.feed_id == self.node.feed_id:
                raise _ThisNode
            if PeerId(a.feed_id) in self.table.links:
                return
            link = await dial(
                a.host,
                a.port,
                identity=self.identity,
                network_key=self.node.network_key,
                server=PeerId(a.feed_id),
                settings=self.tcp,
            )
        finally:
            self._dialing -= 1
        await self.table.serve(link)

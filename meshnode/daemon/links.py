"""The daemon's TCP links: one per peer, bans of rule breakers, and the connection limits.

One connection per pair: when two connections join the same two nodes (both dialed at
once), each side keeps the one dialed by the node with the smaller id, so both keep the
same one; a peer that dials again in the same direction replaces its old connection (it
knows the old one is dead). A peer that breaks the rules is dropped and refused, in and
out, for a while that doubles with each offence.

Limits: at most ``max_connections`` authenticated links, and as many handshakes in
progress, counted apart so that silent connections cannot lock out known peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.core.replication import LinkInfo
from meshnode.errors import LinkError, StoreError
from meshnode.links.tcp import accept
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId, PeerId

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from meshnode.core.node import Node
    from meshnode.links.tcp import TcpLink, TcpSettings
    from meshnode.secure.identity import Identity

__all__ = ["LinkTable", "PeerStats", "loop_now", "peer_name"]

log = logging.getLogger(__name__)

_LINK_MTU_BYTES = 65536
_BAN_S = (10.0, 3600.0)


def peer_name(peer: PeerId) -> str:
    """The text form of a peer's id, for logs and the control socket."""
    return format_feed_id(FeedId(peer))


def loop_now() -> float:
    """The running loop's clock: the ``now`` the core is given."""
    return asyncio.get_running_loop().time()


@dataclass(slots=True)
class PeerStats:
    """Counters of one peer, kept across its connections."""

    entries_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class LinkTable:
    """The authenticated TCP links by peer, the bans, and the limits on links and handshakes.

    ``pump`` is called after every call into the node, to route what it produced.
    """

    def __init__(
        self,
        node: Node,
        identity: Identity,
        *,
        tcp: TcpSettings,
        max_connections: int,
        pump: Callable[[], None],
    ) -> None:
        self.node = node
        self.identity = identity
        self.tcp = tcp
        self.max_connections = max_connections
        self.pump = pump
        self.links: dict[PeerId, TcpLink] = {}
        self.stats: dict[PeerId, PeerStats] = {}
        self.handshakes = 0  # inbound connections not yet authenticated
        self.stopping = False
        self.link_ended: dict[PeerId, asyncio.Event] = {}
        self.all_detached = asyncio.Event()
        self.all_detached.set()  # no links yet
        self._banned: dict[PeerId, tuple[float, int]] = {}  # until, offences
        self._inbound: set[asyncio.Task[Any]] = set()

    def stats_of(self, peer: PeerId) -> PeerStats:
        """The counters of ``peer``, created on first use."""
        return self.stats.setdefault(peer, PeerStats())

    def full(self) -> bool:
        """True when no further link may be opened."""
        return len(self.links) >= self.max_connections

    # -- shutdown -----------------------------------------------------------------------------

    def close_all(self) -> None:
        """Refuse new links and close the open ones (each task then sees its end)."""
        self.stopping = True
        for link in list(self.links.values()):
            link.close()

    async def wait_detached(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for every link to detach."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.all_detached.wait()

    async def cancel_inbound(self) -> None:
        """Cancel the tasks of inbound connections and wait for them."""
        for task in self._inbound:
            task.cancel()
        await asyncio.gather(*self._inbound, return_exceptions=True)

    # -- connections --------------------------------------------------------------------------

    async def on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection, unless a limit refuses it."""
        full = (
            f"{self.handshakes} handshakes in progress"
            if self.handshakes >= self.max_connections
            else f"{len(self.links)} links open"
            if self.full()
            else ""
        )
        if full or self.stopping:
            peer = writer.get_extra_info("peername")
            if full:
                log.warning(
                    "refusing a connection from %s: %s (lan.max_connections)",
                    peer[0] if isinstance(peer, tuple) else "?",
                    full,
                )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        try:
            self.handshakes += 1
            try:
                link = await accept(
                    reader,
                    writer,
                    identity=self.identity,
                    network_key=self.node.network_key,
                    settings=self.tcp,
                )
            finally:
                self.handshakes -= 1
            if link is not None:
                await self.serve(link)
        except LinkError as exc:
            log.warning("%s", exc)
        except Exception:
            log.exception("inbound connection failed")
        finally:
            self._inbound.discard(task)
            writer.close()

    async def serve(self, link: TcpLink) -> None:
        """Attach ``link`` to its peer's session, run it, detach it."""
        if not self._attach(link):
            link.close()
            return
        try:
            await link.run(self._on_frames, self._on_sent)
            log.info("link to %s at %s closed", peer_name(link.peer), link.address)
        except LinkError as exc:
            log.info("link to %s closed: %s", peer_name(link.peer), exc)
        except StoreError as exc:
            # The disk failed under this link's entries (full, or damaged): stop taking
            # them; what is stored stays intact, and the peer is tried again later.
            log.error("closing the link to %s: %s", peer_name(link.peer), exc)
            link.abort()
        finally:
            self._detach(link)

    def _attach(self, link: TcpLink) -> bool:
        peer = link.peer
        if self.stopping:
            return False
        if peer == PeerId(self.node.feed_id):
            log.info("%s is this node itself; closing", link.address)
            return False
        if self.banned_for(peer):
            log.info("refusing %s: it broke the rules recently", peer_name(peer))
            return False
        old = self.links.get(peer)
        if old is None and self.full():
            log.warning(
                "refusing %s: %d links open (lan.max_connections)", peer_name(peer), len(self.links)
            )
            return False
        if old is not None:
            same_way = self._dialer(old) == self._dialer(link)
            if not same_way and self._dialer(old) < self._dialer(link):
                return False  # keep the connection dialed by the smaller id
            old.close()  # the other one wins, or the peer redialed: the old link is stale
            self._detach(old)
        self.links[peer] = link
        self.link_ended[peer] = asyncio.Event()
        self.all_detached.clear()
        log.info(
            "connected to %s at %s (%s)",
            peer_name(peer),
            link.address,
            "dialed" if link.outbound else "accepted",
        )
        self.node.connect(peer, now=loop_now(), link=LinkInfo(mtu_bytes=_LINK_MTU_BYTES))
        self.pump()
        return True

    def ban(self, peer: PeerId, reason: str) -> None:
        """The core dropped ``peer`` for breaking the rules: close it and refuse it a while."""
        _, offences = self._banned.get(peer, (0.0, 0))
        ban_s = min(_BAN_S[1], _BAN_S[0] * 2**offences)
        self._banned[peer] = (loop_now() + ban_s, offences + 1)
        log.warning("dropping %s for %.0f s: %s", peer_name(peer), ban_s, reason)
        link = self.links.get(peer)
        if link is not None:
            link.abort()
            self._detach(link)

    def banned_for(self, peer: PeerId) -> float:
        """Seconds ``peer`` is still refused (0 when it is not)."""
        until, _ = self._banned.get(peer, (0.0, 0))
        return max(0.0, until - loop_now())

    def _dialer(self, link: TcpLink) -> bytes:
        return bytes(self.node.feed_id) if link.outbound else bytes(link.peer)

    def _detach(self, link: TcpLink) -> None:
        stats = self.stats_of(link.peer)
        stats.bytes_in += link.bytes_in
        stats.bytes_out += link.bytes_out
        link.bytes_in = link.bytes_out = 0  # counted once, even if detached twice
        if self.links.get(link.peer) is not link:
            return
        del self.links[link.peer]
        self.link_ended.pop(link.peer).set()
        if not self.links:
            self.all_detached.set()
        self.node.disconnect(link.peer, now=loop_now())
        self.pump()

    def _on_frames(self, link: TcpLink, frames: list[bytes]) -> None:
        if self.links.get(link.peer) is not link:
            return
        now = loop_now()
        for frame in frames:
            self.node.receive_frame(link.peer, frame, now=now)
            if self.links.get(link.peer) is not link:
                break  # the core dropped this peer
        self.pump()

    def _on_sent(self, link: TcpLink, entry_bytes: int) -> None:
        if entry_bytes and self.links.get(link.peer) is link:
            self.node.delivered(link.peer, entry_bytes)
            self.pump()

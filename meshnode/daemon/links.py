"""The daemon's TCP links: one per peer, bans of rule breakers, and the connection limits.

One connection per pair: when two connections join the same two nodes (both dialed at
once), each side keeps the one dialed by the node with the smaller id, so both keep the
same one; a peer that dials again in the same direction replaces its old connection (it
knows the old one is dead). A peer that breaks the rules is dropped and refused, in and
out, for a while that doubles with each offence.

Limits: the slots of authenticated links follow ``slots.py`` (room kept for dialing out
and for followed and configured peers, a cap per address, idle strangers evicted when room
is needed); as many handshakes as links may be in progress, counted apart so that silent
connections cannot lock out known peers, and a share of them per address; when they are
all taken (or the address's share) the oldest is dropped (a real handshake takes
milliseconds: the oldest is the likeliest to be silent). The
tables keyed by peer ids, which strangers choose, are capped: counters of at most
_MAX_PEER_STATS peers and bans of at most _MAX_BANS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.core.replication import LinkInfo
from meshnode.daemon.checker import CheckerPool
from meshnode.daemon.intake import Intake
from meshnode.daemon.slots import SlotLimits, Slots, address_key
from meshnode.errors import LinkError, StoreError
from meshnode.host.verify import PoolVerifier
from meshnode.links.tcp import accept
from meshnode.secure.identity import format_feed_id
from meshnode.store.flatfile import FileStore
from meshnode.types import FeedId, PeerId

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from meshnode.codec.message import Entry
    from meshnode.core.ebt.ahead import EntriesAhead
    from meshnode.core.node import Node
    from meshnode.links.tcp import TcpLink, TcpSettings
    from meshnode.secure.identity import Identity

__all__ = ["LinkTable", "PeerStats", "loop_now", "peer_name"]

log = logging.getLogger(__name__)

_LINK_MTU_BYTES = 65536
_BAN_S = (10.0, 3600.0)
# Peers whose counters are kept after they leave (``meshnode peers``): well above the
# peers a box meets, far below what throwaway identities could make us remember.
_MAX_PEER_STATS = 512
# Bans remembered at once; a full table forgets the ban that ends first.
_MAX_BANS = 1024


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
        limits: SlotLimits,
        pump: Callable[[], None],
    ) -> None:
        self.node = node
        self.identity = identity
        self.tcp = tcp
        self.max_connections = limits.max_links
        self.pump = pump
        self.links: dict[PeerId, TcpLink] = {}
        self.stats: dict[PeerId, PeerStats] = {}
        self.handshakes = 0  # inbound connections not yet authenticated
        self.configured: Callable[[PeerId], bool] = lambda peer: False  # set by the service
        self.slots = Slots(limits, self.protected)
        self._handshaking: dict[asyncio.StreamWriter, str] = {}  # oldest first
        self.stopping = False
        self.link_ended: dict[PeerId, asyncio.Event] = {}
        self.all_detached = asyncio.Event()
        self.all_detached.set()  # no links yet
        self._banned: dict[PeerId, tuple[float, int]] = {}  # until, offences
        self._inbound: set[asyncio.Task[Any]] = set()
        # Signatures of received entries are checked by worker processes ahead of the
        # node (intake.py) when its verifier has more than one thread; else at their turn.
        verifier = node.verifier
        store = node.store
        self._holding = store.holding if isinstance(store, FileStore) else contextlib.nullcontext
        self.verify_pool = (
            CheckerPool(verifier.threads, node.network_key)
            if isinstance(verifier, PoolVerifier)
            else None
        )

    def stats_of(self, peer: PeerId) -> PeerStats:
        """The counters of ``peer``, created on first use (the table is capped)."""
        stats = self.stats.get(peer)
        if stats is None:
            if len(self.stats) >= _MAX_PEER_STATS:
                self._forget_stats()
            stats = self.stats[peer] = PeerStats()
        return stats

    def _forget_stats(self) -> None:
        """Forget the counters of one peer not connected: one that never gave us an entry
        and is not protected if there is one, else the one met longest ago."""
        gone = [p for p in self.stats if p not in self.links]
        useless = [p for p in gone if not self.stats[p].entries_in and not self.protected(p)]
        victim = (useless or gone or list(self.stats))[0]
        del self.stats[victim]

    def protected(self, peer: PeerId) -> bool:
        """True for the peers a stranger must never crowd out: followed or configured."""
        return self.node.hops(FeedId(peer)) == 1 or self.configured(peer)

    def entry_received(self, peer: PeerId) -> None:
        """``peer`` gave us an entry we stored: count it, and its link is not idle."""
        self.stats_of(peer).entries_in += 1
        self.slots.useful(peer, loop_now())

    def full(self) -> bool:
        """True when a link we dial would find no slot, free or idle enough to evict."""
        return not self.slots.room_to_dial(loop_now())

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
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        address = address_key(host)
        full = self.slots.handshake_refusal(loop_now())
        if full or self.stopping:
            if full:
                log.warning("refusing a connection from %s: %s", host, full)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        try:
            self._start_handshake(writer, address)
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
                self.slots.handshake_ended(address)
                self._handshaking.pop(writer, None)
            if link is not None:
                await self.serve(link, address=address)
        except LinkError as exc:
            log.warning("%s", exc)
        except asyncio.CancelledError:
            # Shutdown (cancel_inbound): end quietly. A cancelled connection task would be
            # reported by asyncio with a traceback for every handshake still in progress.
            log.debug("connection from %s closed at shutdown", host)
        except Exception:
            log.exception("inbound connection failed")
        finally:
            self._inbound.discard(task)
            writer.close()

    def _start_handshake(self, writer: asyncio.StreamWriter, address: str) -> None:
        """Count a handshake; when its address's share or all of them are taken, drop the
        oldest one still running (of that address, or of any)."""
        oldest: asyncio.StreamWriter | None = None
        from_here = self.slots.handshakes_from(address)
        if from_here >= self.slots.limits.per_address:
            oldest = next((w for w, a in self._handshaking.items() if a == address), None)
            why = f"{from_here} in progress from there (lan.max_connections_per_address)"
        elif self.handshakes >= self.max_connections and self._handshaking:
            oldest = next(iter(self._handshaking))
            why = f"{self.handshakes} in progress (lan.max_connections)"
        if oldest is not None:
            where = self._handshaking.pop(oldest)
            log.warning("dropping the oldest unfinished handshake, from %s: %s", where, why)
            oldest.transport.abort()  # its accept() fails and ends that connection
        self.handshakes += 1
        self.slots.handshake_started(address)
        self._handshaking[writer] = address

    async def serve(self, link: TcpLink, *, address: str | None = None) -> None:
        """Attach ``link`` to its peer's session, run it, detach it (``address``: the key of
        an inbound link's source address, slots.address_key; None for a link we dialed)."""
        if not self._attach(link, address):
            link.close()
            return
        intake = self._intake(link)
        try:
            try:
                await link.run(self._on_frames if intake is None else intake, self._on_sent)
            finally:
                if intake is not None:
                    await intake.settle()  # what arrived before the end is still taken
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

    def _attach(self, link: TcpLink, address: str | None) -> bool:
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
        if old is None and not self._make_room(peer, address):
            return False
        if old is not None:
            same_way = self._dialer(old) == self._dialer(link)
            if not same_way and self._dialer(old) < self._dialer(link):
                return False  # keep the connection dialed by the smaller id
            old.close()  # the other one wins, or the peer redialed: the old link is stale
            self._detach(old)
        self.links[peer] = link
        self.slots.attached(peer, address=None if link.outbound else address, now=loop_now())
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

    def _make_room(self, peer: PeerId, address: str | None) -> bool:
        """True when ``peer`` may take a slot, evicting an idle link first if it must."""
        admission = self.slots.admit(peer, address=address, now=loop_now())
        if not admission.ok:
            log.warning("refusing %s: %s", peer_name(peer), admission.reason)
            return False
        victim = self.links.get(admission.evict) if admission.evict is not None else None
        if victim is not None:
            log.info(
                "closing the idle link to %s to make room for %s",
                peer_name(victim.peer),
                peer_name(peer),
            )
            victim.close()
            self._detach(victim)
        return True

    def ban(self, peer: PeerId, reason: str) -> None:
        """The core dropped ``peer`` for breaking the rules: close it and refuse it a while."""
        if peer not in self._banned and len(self._banned) >= _MAX_BANS:
            del self._banned[min(self._banned, key=lambda p: self._banned[p][0])]
        _, offences = self._banned.get(peer, (0.0, 0))
        ban_s = min(_BAN_S[1], _BAN_S[0] * 2**offences)
        self._banned[peer] = (loop_now() + ban_s, offences + 1)
        log.warning("dropping %s for %.0f s: %s", peer_name(peer), ban_s, reason)
        link = self.links.get(peer)
        if link is not None:
            link.abort()
            self._detach(link)

    def offences(self, peer: PeerId) -> int:
        """How often ``peer`` was dropped for breaking the rules (while remembered)."""
        return self._banned.get(peer, (0.0, 0))[1]

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
        self.slots.detached(link.peer)
        self.link_ended.pop(link.peer).set()
        if not self.links:
            self.all_detached.set()
        self.node.disconnect(link.peer, now=loop_now())
        self.pump()

    def _intake(self, link: TcpLink) -> _LinkIntake | None:
        if self.verify_pool is None:
            return None
        ahead = self.node.replicator.entries_ahead(link.peer)
        return _LinkIntake(self.verify_pool, ahead, self, link)

    def _on_frames(self, link: TcpLink, frames: list[bytes]) -> None:
        self.take(link, frames, None, None)

    def take(
        self,
        link: TcpLink,
        frames: list[bytes],
        entries: list[Entry | None] | None,
        verdicts: list[bool | None] | None,
    ) -> None:
        """Hand frames from ``link`` to the node, with their entries decoded and checked
        ahead when ``entries`` and ``verdicts`` (one per frame) are given."""
        if self.links.get(link.peer) is not link:
            return
        now = loop_now()
        with self._holding():  # the read's entries go to disk in one write, before any answer
            for i, frame in enumerate(frames):
                if entries is None or verdicts is None:
                    self.node.receive_frame(link.peer, frame, now=now)
                else:
                    self.node.receive_frame(
                        link.peer, frame, now=now, ahead=entries[i], signature_ok=verdicts[i]
                    )
                if self.links.get(link.peer) is not link:
                    break  # the core dropped this peer
        self.pump()

    def _on_sent(self, link: TcpLink, entry_bytes: int) -> None:
        if entry_bytes and self.links.get(link.peer) is link:
            self.slots.useful(link.peer, loop_now())
            self.node.delivered(link.peer, entry_bytes)
            self.pump()


class _LinkIntake(Intake):
    """The intake of one TCP link, called by its read loop."""

    def __init__(
        self, pool: CheckerPool, ahead: EntriesAhead, table: LinkTable, link: TcpLink
    ) -> None:
        super().__init__(
            pool,
            ahead,
            lambda frames, entries, verdicts: table.take(link, frames, entries, verdicts),
            link.abort,
        )

    def __call__(self, link: TcpLink, frames: list[bytes]) -> asyncio.Future[None] | None:
        return self.receive(frames)

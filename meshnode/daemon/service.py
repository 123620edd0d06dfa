"""The daemon: the node core on TCP links, mDNS and the control socket, in one asyncio loop.

One TaskGroup holds the timer, the watchdog, discovery, one dialer per known peer and one
task per connection. Every call into the sans-IO Node is followed by ``_pump``, which
routes the frames it produced to their links, handles its events and re-arms the timer.
A failing discovery or dialer task is logged and restarted after a pause; a failing link
ends only itself. SIGTERM and SIGINT close the links (box-stream goodbye), flush the
store and return.

One connection per pair: when two connections join the same two nodes (both dialed at
once), each side keeps the one dialed by the node with the smaller id, so both keep the
same one; a peer that dials again in the same direction replaces its old connection (it
knows the old one is dead). A peer that breaks the rules is dropped and refused, in and
out, for a while that doubles with each offence.

Limits: at most ``max_connections`` authenticated links, and as many handshakes in
progress, counted apart so that silent connections cannot lock out known peers; mDNS adds
at most _MAX_MDNS_TARGETS peers to dial and forgets one after _MDNS_GIVE_UP failures, so
forged announcements cannot fill the node with dialers. A static peer in the config keeps
its address whatever mDNS says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.core.events import EntryReceived, PeerMisbehaved
from meshnode.core.replication import LinkInfo
from meshnode.daemon import ops
from meshnode.daemon.control import ControlServer
from meshnode.errors import LinkError, StoreError
from meshnode.host.address import PeerAddress, format_host_port
from meshnode.links.radio import RadioInterface
from meshnode.links.tcp import TcpLink, TcpSettings, accept, dial, query_key
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId, PeerId

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from pathlib import Path
    from typing import Any

    from meshnode.core.node import Node
    from meshnode.host.config import RadioSection
    from meshnode.host.sdnotify import Notifier
    from meshnode.links.discovery import PeerSeen
    from meshnode.secure.identity import Identity

__all__ = ["Service", "ServiceSettings", "reconnect_delay_s"]

log = logging.getLogger(__name__)

_TASK_RESTART_S = (1.0, 60.0)
_SECOND_DIALER_DELAY_S = 2.0
_LINK_MTU_BYTES = 65536
_SHUTDOWN_GRACE_S = 2.0
_MAX_MDNS_TARGETS = 64
_MDNS_GIVE_UP = 5
_BAN_S = (10.0, 3600.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    """What the daemon needs beyond the node: where to listen and whom to dial."""

    listen_host: str = "0.0.0.0"
    listen_port: int = 7420
    peers: tuple[PeerAddress, ...] = ()
    tcp: TcpSettings = field(default_factory=TcpSettings)
    max_connections: int = 64
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0
    radios: tuple[RadioSection, ...] = ()


def _name(peer: PeerId) -> str:
    return format_feed_id(FeedId(peer))


def _peer_of(target: _Target) -> PeerId | None:
    return None if target.address.feed_id is None else PeerId(target.address.feed_id)


def reconnect_delay_s(failures: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Backoff before the next dial: doubling from ``min_s`` up to ``max_s``, jittered 50-100%."""
    base = min(max_s, min_s * 2 ** min(max(failures - 1, 0), 30))
    return float(base * rng.uniform(0.5, 1.0))


class _ThisNode(Exception):
    """A peer address that leads back to this node."""


@dataclass(slots=True)
class _Target:
    """A peer we keep dialing."""

    address: PeerAddress
    source: str
    failures: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _PeerStats:
    """Counters of one peer, kept across its connections."""

    entries_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class Service:
    """Runs a Node on the LAN until told to stop."""

    def __init__(
        self,
        node: Node,
        identity: Identity,
        settings: ServiceSettings,
        *,
        notifier: Notifier,
        control_path: Path,
        discovery: Callable[[Callable[[PeerSeen], None], int], Coroutine[Any, Any, None]] | None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.identity = identity
        self.settings = settings
        self.notifier = notifier
        self.discovery = discovery
        self.rng = rng or random.Random()
        self.links: dict[PeerId, TcpLink] = {}
        self.targets: dict[str, _Target] = {}
        self.stats: dict[PeerId, _PeerStats] = {}
        self.started_at = time.monotonic()
        self.listening: list[str] = []
        self._handshakes = 0  # inbound connections not yet authenticated
        self._dialing = 0
        self._stopping = False
        self._banned: dict[PeerId, tuple[float, int]] = {}  # until, offences
        self._inbound: set[asyncio.Task[Any]] = set()
        self._link_ended: dict[PeerId, asyncio.Event] = {}
        self._timer_wake = asyncio.Event()
        self._armed: float | None = None
        self._stop = asyncio.Event()
        self._all_detached = asyncio.Event()
        self._all_detached.set()  # no links yet
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.radios = [
            RadioInterface(node, radio, rng=random.Random(self.rng.random()))
            for radio in settings.radios
        ]
        for interface in self.radios:
            interface.on_receive = self._pump
        self.control = ControlServer(
            node,
            extra={"peers": self._peers_request, "status": self._status_request},
            after=self._pump,
            path=control_path,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask run() to finish (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> None:
        """Listen, discover, dial and serve until stop(); then close links and flush.

        Raises:
            LinkError: the listening or control socket cannot be opened.
        """
        loop = asyncio.get_running_loop()
        server, control = await self._open_sockets()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in saved:
            loop.add_signal_handler(sig, self._on_signal, sig)
        # The CLI blocks these signals while it opens the store; the handlers take them now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._serve(server, control)
        finally:
            for sig, handler in saved.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
            server.close()
            control.close()
            self.control.close()
            self.node.flush()

    async def _open_sockets(self) -> tuple[asyncio.Server, asyncio.Server]:
        s = self.settings
        where = format_host_port(s.listen_host, s.listen_port)
        try:
            server = await asyncio.start_server(self._on_inbound, s.listen_host, s.listen_port)
        except OSError as exc:
            raise LinkError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        try:
            control = await self.control.start()
        except OSError as exc:
            server.close()
            path = self.control.path
            raise LinkError(
                f"cannot open the control socket {path}: {exc.strerror or exc}"
            ) from None
        self.listening = [
            format_host_port(str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for sock in server.sockets
        ]
        return server, control

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received; closing links and flushing the store", sig.name)
        self.stop()

    async def _serve(self, server: asyncio.Server, control: asyncio.Server) -> None:
        s = self.settings
        log.info("listening on %s; control socket %s", ", ".join(self.listening), self.control.path)
        self._spawn(self._supervise("timer", self._timer_loop))
        if self.notifier.watchdog_period_s:
            self._spawn(self._watchdog_loop(self.notifier.watchdog_period_s))
        if self.discovery is not None:
            discovery = self.discovery
            port = int(server.sockets[0].getsockname()[1])
            self._spawn(self._supervise("mdns", lambda: discovery(self._on_seen, port)))
        for peer in s.peers:
            self._add_target(peer, "config")
        for interface in self.radios:
            self._spawn(self._supervise(f"radio {interface.name}", interface.run))
        self.notifier.notify("READY=1", f"STATUS={self._status_line()}")
        await self._stop.wait()
        self._stopping = True
        self.notifier.notify("STOPPING=1")
        server.close()
        control.close()
        for link in list(self.links.values()):
            link.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SHUTDOWN_GRACE_S):
                await self._all_detached.wait()  # each link's task sees its end and detaches
        for task in [*self._tasks, *self._inbound]:
            task.cancel()
        await asyncio.gather(*self._inbound, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``factory()``; when it fails, log it and start it again after a pause."""
        failures = 0
        while True:
            try:
                await factory()
                return
            except Exception:
                failures += 1
                delay = min(_TASK_RESTART_S[1], _TASK_RESTART_S[0] * 2 ** (failures - 1))
                log.exception("%s failed; restarting it in %.0f s", name, delay)
            await asyncio.sleep(delay)

    # -- the core's clock and outputs --------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _pump(self) -> None:
        """Route the core's frames, handle its events, re-arm its timer."""
        batches: dict[PeerId, list[bytes]] = {}
        for peer, frame in self.node.frames_to_send():
            batches.setdefault(peer, []).append(frame)
        for peer, frames in batches.items():
            link = self.links.get(peer)
            if link is not None:
                link.send(frames)
        for event in self.node.events():
            if isinstance(event, PeerMisbehaved):
                self._ban(event.peer, event.reason)
            elif isinstance(event, EntryReceived):
                self._stats(event.peer).entries_in += 1
        if self.node.next_deadline() != self._armed:
            self._timer_wake.set()
        for interface in self.radios:
            interface.poke()

    async def _timer_loop(self) -> None:
        while True:
            self._armed = deadline = self.node.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - self._now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timer_wake.wait()
            self._timer_wake.clear()
            if deadline is not None and deadline <= self._now():
                self.node.handle_timer(self._now())
                self._pump()

    async def _watchdog_loop(self, period_s: float) -> None:
        while True:
            self.notifier.notify("WATCHDOG=1", f"STATUS={self._status_line()}")
            await asyncio.sleep(period_s)

    def _status_line(self) -> str:
        return f"listening on {', '.join(self.listening)}; {len(self.links)} peers connected"

    # -- links --------------------------------------------------------------------------------

    def _stats(self, peer: PeerId) -> _PeerStats:
        return self.stats.setdefault(peer, _PeerStats())

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self.settings
        full = (
            f"{self._handshakes} handshakes in progress"
            if self._handshakes >= s.max_connections
            else f"{len(self.links)} links open"
            if len(self.links) >= s.max_connections
            else ""
        )
        if full or self._stopping:
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
            self._handshakes += 1
            try:
                link = await accept(
                    reader,
                    writer,
                    identity=self.identity,
                    network_key=self.node.network_key,
                    settings=s.tcp,
                )
            finally:
                self._handshakes -= 1
            if link is not None:
                await self._serve_link(link)
        except LinkError as exc:
            log.warning("%s", exc)
        except Exception:
            log.exception("inbound connection failed")
        finally:
            self._inbound.discard(task)
            writer.close()

    async def _serve_link(self, link: TcpLink) -> None:
        """Attach ``link`` to its peer's session, run it, detach it."""
        if not self._attach(link):
            link.close()
            return
        try:
            await link.run(self._on_frames, self._on_sent)
            log.info("link to %s at %s closed", _name(link.peer), link.address)
        except LinkError as exc:
            log.info("link to %s closed: %s", _name(link.peer), exc)
        except StoreError as exc:
            # The disk failed under this link's entries (full, or damaged): stop taking
            # them; what is stored stays intact, and the peer is tried again later.
            log.error("closing the link to %s: %s", _name(link.peer), exc)
            link.abort()
        finally:
            self._detach(link)

    def _attach(self, link: TcpLink) -> bool:
        peer = link.peer
        if self._stopping:
            return False
        if peer == PeerId(self.node.feed_id):
            log.info("%s is this node itself; closing", link.address)
            return False
        if self._banned_for(peer):
            log.info("refusing %s: it broke the rules recently", _name(peer))
            return False
        old = self.links.get(peer)
        if old is None and len(self.links) >= self.settings.max_connections:
            log.warning(
                "refusing %s: %d links open (lan.max_connections)", _name(peer), len(self.links)
            )
            return False
        if old is not None:
            same_way = self._dialer(old) == self._dialer(link)
            if not same_way and self._dialer(old) < self._dialer(link):
                return False  # keep the connection dialed by the smaller id
            old.close()  # the other one wins, or the peer redialed: the old link is stale
            self._detach(old)
        self.links[peer] = link
        self._link_ended[peer] = asyncio.Event()
        self._all_detached.clear()
        log.info(
            "connected to %s at %s (%s)",
            _name(peer),
            link.address,
            "dialed" if link.outbound else "accepted",
        )
        self.node.connect(peer, now=self._now(), link=LinkInfo(mtu_bytes=_LINK_MTU_BYTES))
        self._pump()
        return True

    def _ban(self, peer: PeerId, reason: str) -> None:
        """The core dropped ``peer`` for breaking the rules: close it and refuse it a while."""
        _, offences = self._banned.get(peer, (0.0, 0))
        ban_s = min(_BAN_S[1], _BAN_S[0] * 2**offences)
        self._banned[peer] = (self._now() + ban_s, offences + 1)
        log.warning("dropping %s for %.0f s: %s", _name(peer), ban_s, reason)
        link = self.links.get(peer)
        if link is not None:
            link.abort()
            self._detach(link)

    def _banned_for(self, peer: PeerId) -> float:
        """Seconds ``peer`` is still refused (0 when it is not)."""
        until, _ = self._banned.get(peer, (0.0, 0))
        return max(0.0, until - self._now())

    def _dialer(self, link: TcpLink) -> bytes:
        return bytes(self.node.feed_id) if link.outbound else bytes(link.peer)

    def _detach(self, link: TcpLink) -> None:
        stats = self._stats(link.peer)
        stats.bytes_in += link.bytes_in
        stats.bytes_out += link.bytes_out
        link.bytes_in = link.bytes_out = 0  # counted once, even if detached twice
        if self.links.get(link.peer) is not link:
            return
        del self.links[link.peer]
        self._link_ended.pop(link.peer).set()
        if not self.links:
            self._all_detached.set()
        self.node.disconnect(link.peer, now=self._now())
        self._pump()

    def _on_frames(self, link: TcpLink, frames: list[bytes]) -> None:
        if self.links.get(link.peer) is not link:
            return
        now = self._now()
        for frame in frames:
            self.node.receive_frame(link.peer, frame, now=now)
            if self.links.get(link.peer) is not link:
                break  # the core dropped this peer
        self._pump()

    def _on_sent(self, link: TcpLink, entry_bytes: int) -> None:
        if entry_bytes and self.links.get(link.peer) is link:
            self.node.delivered(link.peer, entry_bytes)
            self._pump()

    # -- dialing ------------------------------------------------------------------------------

    def _on_seen(self, seen: PeerSeen) -> None:
        address = PeerAddress(host=seen.host, port=seen.port, feed_id=seen.feed_id)
        for target in self.targets.values():
            if target.address.feed_id == seen.feed_id:
                if target.source == "mdns":
                    target.address = address  # it may have moved; static peers stay put
                return
        if sum(t.source == "mdns" for t in self.targets.values()) >= _MAX_MDNS_TARGETS:
            log.debug("ignoring %s: %d peers from mDNS already", address, _MAX_MDNS_TARGETS)
            return
        self._add_target(address, seen.source)

    def _add_target(self, address: PeerAddress, source: str) -> None:
        key = _name(PeerId(address.feed_id)) if address.feed_id else str(address)
        if key in self.targets:
            return
        target = _Target(address=address, source=source)
        self.targets[key] = target

        async def dial_loop() -> None:
            await self._dial_loop(target)
            self.targets.pop(key, None)

        self._spawn(self._supervise(f"dialer for {address}", dial_loop))

    async def _dial_loop(self, target: _Target) -> None:
        """Keep a link to ``target``; return when it turns out to be us, or mDNS lost it."""
        s = self.settings
        peer = _peer_of(target)
        # Both sides of a pair discover each other at once: the larger id waits a little,
        # so usually one connection is made and the tie-break has nothing to do.
        second = target.source == "mdns" and peer is not None and peer < self.node.feed_id
        delay = _SECOND_DIALER_DELAY_S if second else 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            delay = reconnect_delay_s(1, s.reconnect_min_s, s.reconnect_max_s, self.rng)
            peer = _peer_of(target)
            if peer is not None and peer in self.links:
                await self._link_ended[peer].wait()
                continue
            if peer is not None and self._banned_for(peer):
                delay = self._banned_for(peer)
                continue
            if len(self.links) >= s.max_connections:
                continue  # our own limit, not the peer's fault: try again soon
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
                delay = reconnect_delay_s(
                    target.failures, s.reconnect_min_s, s.reconnect_max_s, self.rng
                )
                log.info("cannot reach %s: %s; retrying in %.0f s", target.address, exc, delay)

    async def _dial_once(self, target: _Target) -> None:
        a, s = target.address, self.settings
        self._dialing += 1
        try:
            if a.feed_id is None:
                key = await query_key(
                    a.host,
                    a.port,
                    network_key=self.node.network_key,
                    timeout_s=s.tcp.handshake_timeout_s,
                )
                if key == PeerId(self.node.feed_id):
                    raise _ThisNode
                log.info("%s is %s (learned on first contact)", a, _name(key))
                target.address = a = PeerAddress(host=a.host, port=a.port, feed_id=FeedId(key))
            assert a.feed_id is not None
            if a.feed_id == self.node.feed_id:
                raise _ThisNode
            if PeerId(a.feed_id) in self.links:
                return
            link = await dial(
                a.host,
                a.port,
                identity=self.identity,
                network_key=self.node.network_key,
                server=PeerId(a.feed_id),
                settings=s.tcp,
            )
        finally:
            self._dialing -= 1
        await self._serve_link(link)

    # -- control requests ---------------------------------------------------------------------

    def _status_request(self, node: Node, args: Mapping[str, object]) -> dict[str, object]:
        if args.get("brief"):
            return ops.status(node, args)
        return {
            **ops.status(node, args),
            "daemon": {
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "listening": self.listening,
                "mdns": self.discovery is not None,
                "peers_connected": len(self.links),
                "peers_by_link": self._peers_by_link(),
                "backlog": self._backlog(),
                "handshakes": self._handshakes,
                "radios": [interface.status() for interface in self.radios],
            },
        }

    def _peers_by_link(self) -> dict[str, int]:
        """Connected peers per link: TCP, and the neighbours heard on each radio."""
        counts = {"tcp": len(self.links)}
        for interface in self.radios:
            counts[f"radio:{interface.name}"] = len(interface.channel.neighbour_ids())
        return counts

    def _backlog(self) -> dict[str, int]:
        """Work still to do: entries connected peers hold that we lack, and the feeds each
        radio has yet to send to neighbours waiting for them."""
        radio = [interface.channel.status().get("serving", 0) for interface in self.radios]
        return {
            "to_receive": sum(self.node.replicator.behind(peer) for peer in self.links),
            "radio_to_send": sum(n for n in radio if isinstance(n, int)),
        }

    def _peers_request(self, node: Node, args: Mapping[str, object]) -> dict[str, object]:
        known: dict[PeerId, _Target | None] = dict.fromkeys({*self.stats, *self.links})
        for target in self.targets.values():
            if target.address.feed_id is not None:
                known[PeerId(target.address.feed_id)] = target
        ordered = sorted(known.items(), key=lambda item: _name(item[0]))
        peers = [self._peer_json(peer, target) for peer, target in ordered]
        radios = [interface.status() for interface in self.radios]
        for interface, status in zip(self.radios, radios, strict=True):
            for short in interface.channel.neighbour_ids():
                peers.append(
                    {
                        "id": str(short),
                        "link": f"radio:{interface.name}",
                        "connected": interface.state == "open",
                        "direction": None,
                        "address": interface.radio.port,
                        "source": "beacon",
                        "rtt_ms": None,
                        "bytes_in": None,
                        "bytes_out": status.get("data_bytes"),
                        "entries_in": status.get("entries_added"),
                        "behind": status.get("serving"),
                        "airtime_share": status.get("airtime_share"),
                        "last_error": None,
                    }
                )
        return {"peers": peers, "radios": radios}

    def _peer_json(self, peer: PeerId, target: _Target | None) -> dict[str, object]:
        link = self.links.get(peer)
        stats = self._stats(peer)
        dialed = (
            None if target is None else format_host_port(target.address.host, target.address.port)
        )
        return {
            "id": _name(peer),
            "link": "tcp",
            "connected": link is not None,
            "direction": None if link is None else ("out" if link.outbound else "in"),
            "address": link.address if link is not None else dialed,
            "source": "inbound" if target is None else target.source,
            "rtt_ms": None if link is None or link.rtt_s is None else round(link.rtt_s * 1000, 1),
            "bytes_in": stats.bytes_in + (link.bytes_in if link else 0),
            "bytes_out": stats.bytes_out + (link.bytes_out if link else 0),
            "entries_in": stats.entries_in,
            "behind": self.node.replicator.behind(peer) if link is not None else None,
            "last_error": (target.last_error or None) if target is not None else None,
        }

"""The daemon: the node core on TCP links, mDNS and the control socket, in one asyncio loop.

One TaskGroup holds the timer, the watchdog, discovery, one dialer per known peer and one
task per connection. Every call into the sans-IO Node is followed by ``_pump``, which
routes the frames it produced to their links, handles its events and re-arms the timer.
A failing discovery or dialer task is logged and restarted after a pause; a failing link
ends only itself. SIGTERM and SIGINT close the links (box-stream goodbye), flush the
store and return.

The links with their one-per-pair rule, bans and limits are in ``links.py``; whom to dial
and when, in ``dialing.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.core.events import EntryReceived, PeerMisbehaved
from meshnode.daemon import ops
from meshnode.daemon.control import ControlServer
from meshnode.daemon.dialing import Dialer, Target, reconnect_delay_s
from meshnode.daemon.links import LinkTable, loop_now, peer_name
from meshnode.daemon.listener import Listener
from meshnode.daemon.private_ops import private_requests
from meshnode.daemon.slots import DEFAULT_EVICT_IDLE_S, SlotLimits
from meshnode.errors import LinkError
from meshnode.host.address import PeerAddress, format_host_port
from meshnode.host.eventlog import log_event
from meshnode.host.usb_history import usb_syncs
from meshnode.links.radio import RadioInterface
from meshnode.links.tcp import TcpSettings
from meshnode.types import PeerId
from meshnode.web.server import WebServer, WebSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from pathlib import Path
    from typing import Any

    from meshnode.core.node import Node
    from meshnode.host.config import RadioSection
    from meshnode.host.sdnotify import Notifier
    from meshnode.links.discovery import PeerSeen
    from meshnode.links.tcp import TcpLink
    from meshnode.secure.identity import Identity

__all__ = ["Service", "ServiceSettings", "reconnect_delay_s"]

log = logging.getLogger(__name__)

_TASK_RESTART_S = (1.0, 60.0)
# How long the larger id of a pair that found each other by mDNS waits before dialing.
_SECOND_DIALER_DELAY_S = 2.0
_SHUTDOWN_GRACE_S = 2.0
_Target = Target  # the name the daemon's tests build targets by, from before dialing.py


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    """What the daemon needs beyond the node: where to listen and whom to dial."""

    listen_host: str = "0.0.0.0"
    listen_port: int = 7420
    peers: tuple[PeerAddress, ...] = ()
    tcp: TcpSettings = field(default_factory=TcpSettings)
    max_connections: int = 64
    reserved_share: float = 0.25  # of max_connections, never taken by inbound strangers
    max_connections_per_address: int = 8
    evict_idle_s: float = DEFAULT_EVICT_IDLE_S  # a stranger's link idle this long may go
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0
    radios: tuple[RadioSection, ...] = ()
    web: WebSettings | None = None  # the village page; None: not served
    data_dir: Path | None = None  # pinned keys for private messages; None: no dm/inbox


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
        self.table = LinkTable(
            node,
            identity,
            tcp=settings.tcp,
            limits=SlotLimits(
                max_links=settings.max_connections,
                reserved=int(settings.max_connections * settings.reserved_share),
                per_address=settings.max_connections_per_address,
                evict_idle_s=settings.evict_idle_s,
            ),
            pump=self._pump,
        )
        self.dialer = Dialer(
            node,
            identity,
            self.table,
            tcp=settings.tcp,
            reconnect_s=(settings.reconnect_min_s, settings.reconnect_max_s),
            rng=self.rng,
            spawn=self._spawn_supervised,
            second_dialer_delay_s=_SECOND_DIALER_DELAY_S,
        )
        self.table.configured = self.dialer.configured
        self.started_at = time.monotonic()
        self.lan = Listener(self.table.on_inbound, settings.listen_host, settings.listen_port)
        self.listening: list[str] = []
        self._timer_wake = asyncio.Event()
        self._armed: float | None = None
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.radios = [
            RadioInterface(node, radio, rng=random.Random(self.rng.random()))
            for radio in settings.radios
        ]
        for interface in self.radios:
            interface.on_receive = self._pump
        self.web = (
            None if settings.web is None else WebServer(node, settings.web, on_change=self._pump)
        )
        self.control = ControlServer(
            node,
            extra={
                "peers": self._peers_request,
                "status": self._status_request,
                **private_requests(settings.data_dir),
            },
            after=self._pump,
            path=control_path,
        )
        if self.web is not None:
            self.web.box.status = self._operator_status

    # -- the parts' state under the names it had here (status requests and tests read it) -----

    @property
    def links(self) -> dict[PeerId, TcpLink]:
        """The open TCP links by peer."""
        return self.table.links

    @property
    def targets(self) -> dict[str, Target]:
        """The peers being dialed, by id (or address while the id is unknown)."""
        return self.dialer.targets

    @property
    def _handshakes(self) -> int:
        return self.table.handshakes

    @property
    def _link_ended(self) -> dict[PeerId, asyncio.Event]:
        return self.table.link_ended

    @property
    def _all_detached(self) -> asyncio.Event:
        return self.table.all_detached

    def _add_target(self, address: PeerAddress, source: str) -> None:
        self.dialer.add_target(address, source)

    def _on_seen(self, seen: PeerSeen) -> None:
        self.dialer.on_seen(seen)

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
        control = await self._open_sockets()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in saved:
            loop.add_signal_handler(sig, self._on_signal, sig)
        # The CLI blocks these signals while it opens the store; the handlers take them now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._serve(control)
        finally:
            for sig, handler in saved.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
            self.lan.close()
            control.close()
            self.control.close()
            if self.web is not None:
                await self.web.close()
            if self.table.verify_pool is not None:
                self.table.verify_pool.close()
                await self.table.verify_pool.wait_closed()
            self.node.flush()

    async def _open_sockets(self) -> asyncio.Server:
        """The LAN listener (or the wait for its address), the control socket, the page."""
        await self.lan.open()
        try:
            control = await self.control.start()
        except OSError as exc:
            self.lan.close()
            path = self.control.path
            raise LinkError(
                f"cannot open the control socket {path}: {exc.strerror or exc}"
            ) from None
        if self.web is not None:
            try:
                await self.web.start()
            except LinkError:
                self.lan.close()
                control.close()
                raise
        self.listening = self.lan.addresses()
        return control

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received; closing links and flushing the store", sig.name)
        self.stop()

    async def _serve(self, control: asyncio.Server) -> None:
        s = self.settings
        log.info("%s; control socket %s", self._listening_line(), self.control.path)
        self._spawn_supervised("timer", self._timer_loop)
        if self.notifier.watchdog_period_s:
            self._spawn(self._watchdog_loop(self.notifier.watchdog_period_s))
        if self.lan.waiting:
            self._spawn_supervised("listener", self._listen_when_possible)
        else:
            self._start_discovery()
        for peer in s.peers:
            self.dialer.add_target(peer, "config")
        for interface in self.radios:
            self._spawn_supervised(f"radio {interface.name}", interface.run)
        self.notifier.notify("READY=1", f"STATUS={self._status_line()}")
        await self._stop.wait()
        self.notifier.notify("STOPPING=1")
        self.lan.close()
        control.close()
        self.table.close_all()
        await self.table.wait_detached(_SHUTDOWN_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await self.table.cancel_inbound()

    async def _listen_when_possible(self) -> None:
        """Bind once the listen address is on the box; then advertise, and say so."""
        await self.lan.wait_open()
        self.listening = self.lan.addresses()
        self._start_discovery()
        self.notifier.notify(f"STATUS={self._status_line()}")

    def _start_discovery(self) -> None:
        """mDNS, advertising the port the listener has."""
        if self.discovery is not None and self.lan.server is not None:
            discovery = self.discovery
            port = int(self.lan.server.sockets[0].getsockname()[1])
            self._spawn_supervised("mdns", lambda: discovery(self.dialer.on_seen, port))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_supervised(
        self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        self._spawn(self._supervise(name, factory))

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
                self.table.ban(event.peer, event.reason)  # logs it, with the ban's length
            elif isinstance(event, EntryReceived):
                self.table.entry_received(event.peer)
            else:
                log_event(event)
        if self.node.next_deadline() != self._armed:
            self._timer_wake.set()
        for interface in self.radios:
            interface.poke()

    async def _timer_loop(self) -> None:
        while True:
            self._armed = deadline = self.node.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - loop_now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timer_wake.wait()
            self._timer_wake.clear()
            if deadline is not None and deadline <= loop_now():
                self.node.handle_timer(loop_now())
                self._pump()

    async def _watchdog_loop(self, period_s: float) -> None:
        while True:
            self.notifier.notify("WATCHDOG=1", f"STATUS={self._status_line()}")
            await asyncio.sleep(period_s)

    def _listening_line(self) -> str:
        if self.lan.waiting:
            return f"waiting for {self.lan.where} ({self.lan.host} is not on this box yet)"
        return f"listening on {', '.join(self.listening)}"

    def _status_line(self) -> str:
        return f"{self._listening_line()}; {len(self.links)} peers connected"

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
                "waiting_for": self.lan.where if self.lan.waiting else None,
                "page_url": self.web.page_url if self.web is not None else None,
                "mdns": self.discovery is not None,
                "peers_connected": len(self.links),
                "peers_by_link": self._peers_by_link(),
                "backlog": self._backlog(),
                "handshakes": self.table.handshakes,
                "radios": [interface.status() for interface in self.radios],
            },
        }

    def _operator_status(self) -> dict[str, object]:
        """What the page's operator sees: totals (not every feed's range), the disk under
        the data dir, every peer and radio, and the last drives synced (usb-syncs.json)."""
        status = self._status_request(self.node, {"ranges": False})
        peers = self._peers_request(self.node, {})
        data_dir = None if self.settings.web is None else self.settings.web.data_dir
        disk: dict[str, int] | None = None
        if data_dir is not None:
            with contextlib.suppress(OSError):
                usage = shutil.disk_usage(data_dir)
                disk = {"total_bytes": usage.total, "free_bytes": usage.free}
        return {
            **status,
            "disk": disk,
            "peers": peers["peers"],
            "radios": peers["radios"],
            "usb_syncs": [] if data_dir is None else usb_syncs(data_dir),
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
        known: dict[PeerId, Target | None] = dict.fromkeys({*self.table.stats, *self.links})
        for target in self.targets.values():
            if target.address.feed_id is not None:
                known[PeerId(target.address.feed_id)] = target
        ordered = sorted(known.items(), key=lambda item: peer_name(item[0]))
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

    def _peer_json(self, peer: PeerId, target: Target | None) -> dict[str, object]:
        link = self.links.get(peer)
        stats = self.table.stats_of(peer)
        dialed = (
            None if target is None else format_host_port(target.address.host, target.address.port)
        )
        return {
            "id": peer_name(peer),
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

"""mDNS/DNS-SD discovery of nodes on the same network: zeroconf advertise and browse.

Each node registers ``mn-<16 hex of its key>._meshnode._tcp.local.``: SRV gives its listening
port on its own host name ``mn-<16 hex>.local.``; A/AAAA give the addresses given, or else
every non-loopback address (loopback only when there is nothing else); TXT is (each string
is a length byte plus ``key=value``):

    v=1          4 bytes   DISCOVERY_VERSION; another version is ignored
    id=<b64>    48 bytes   the 32-byte ed25519 key, standard base64 (44 chars)
    net=<tag>   13 bytes   network_tag(network_key), 8 hex; another network is ignored
                65 bytes   in all (RFC 6763 asks for <= 200)

Identity lives in TXT, not in the instance name, because names are renamed on conflict.
The node gets its own host name, never the system one: avahi-daemon already owns that,
and zeroconf lives beside avahi on UDP 5353 (both set SO_REUSEPORT). Interfaces that come
up after start (Wi-Fi, an access point) are told by the kernel (rtnetlink, ``netlink.py``;
without it the adapters are read every ``rescan_s``): the addresses are then read once with
``ifaddr``, zeroconf rebinds its sockets (``async_update_interfaces``, zeroconf >= 0.150;
older versions restart) and the service is re-announced with the new addresses. Nothing
here wakes while the interfaces stay as they are. Peers are reported at one address: IPv4
on one of our subnets, else any IPv4, else IPv6 (``%scope`` kept). The only module
importing zeroconf.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from meshnode.links.netlink import InterfaceWatch
from meshnode.secure.identity import KEY_BYTES, format_feed_id, network_tag
from meshnode.types import FeedId

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DISCOVERY_VERSION",
    "HTTPS_SERVICE_TYPE",
    "HTTP_SERVICE_TYPE",
    "SERVICE_TYPE",
    "MdnsDiscovery",
    "PeerSeen",
    "page_instance_name",
    "parse_properties",
    "service_properties",
]

log = logging.getLogger(__name__)

DISCOVERY_VERSION = 1
SERVICE_TYPE = "_meshnode._tcp.local."
HTTP_SERVICE_TYPE = "_http._tcp.local."  # the village page, so browsers find it by name
HTTPS_SERVICE_TYPE = "_https._tcp.local."  # the same page when it is served over TLS
_RESOLVE_TIMEOUT_MS = 3000


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSeen:
    """A node of our network announced itself."""

    feed_id: FeedId
    host: str
    port: int
    source: str = "mdns"


def service_properties(feed_id: FeedId, network_key: bytes) -> dict[str, str]:
    """TXT record: version, base64 key and network tag."""
    return {
        "v": str(DISCOVERY_VERSION),
        "id": base64.b64encode(feed_id).decode("ascii"),
        "net": network_tag(network_key),
    }


def parse_properties(props: Mapping[bytes, bytes | None], network_key: bytes) -> FeedId | None:
    """The announcing node's key, or None for another network or version, or garbage."""
    if props.get(b"v") != str(DISCOVERY_VERSION).encode():
        return None
    if props.get(b"net") != network_tag(network_key).encode():
        return None
    text = props.get(b"id")
    if text is None:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Only the canonical 44-char form: one key, one text.
    if len(raw) != KEY_BYTES or base64.b64encode(raw) != text:
        return None
    return FeedId(raw)


def page_instance_name(box_name: str) -> str:
    """A DNS-SD instance name: printable, no dots, at most 63 bytes of UTF-8."""
    name = "".join(c for c in box_name if c.isprintable() and c != ".").strip() or "meshnode"
    while len(name.encode()) > 63:
        name = name[:-1]
    return name


def _label(feed_id: FeedId) -> str:
    return "mn-" + feed_id.hex()[:16]


def _adapter_addresses(*, loopback: bool, ipv6: bool = True) -> set[str]:
    """Addresses of every adapter (IPv6 without its scope: records carry none)."""
    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            is_v6, is_loopback = ":" in text, ipaddress.ip_address(text).is_loopback
            if (ipv6 or not is_v6) and (loopback or not is_loopback):
                found.add(text)
    return found


def _local_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets we sit on, to prefer a peer address we can reach directly."""
    return [
        ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str)
    ]


def _pick_host(v4: list[str], v6: list[str], local: list[ipaddress.IPv4Network]) -> str | None:
    """IPv4 on one of our subnets, else any IPv4, else IPv6 (scoped when link-local)."""
    for address in v4:
        if any(ipaddress.IPv4Address(address) in net for net in local):
            return address
    candidates = v4 + v6
    return candidates[0] if candidates else None


class MdnsDiscovery:
    """Advertise this node over mDNS and report the nodes of our network that we see."""

    def __init__(
        self,
        *,
        feed_id: FeedId,
        network_key: bytes,
        port: int,
        on_seen: Callable[[PeerSeen], None],
        interfaces: list[str] | None = None,
        rescan_s: float = 60.0,
        page: tuple[str, int] | None = None,
        page_tls: bool = False,
    ) -> None:
        self._feed_id = feed_id
        self._network_key = network_key
        self._port = port
        self._on_seen = on_seen
        self._interfaces = interfaces
        self._rescan_s = rescan_s
        self._page = page  # (box name, port) of the village page, advertised as _http._tcp
        self._page_type = HTTPS_SERVICE_TYPE if page_tls else HTTP_SERVICE_TYPE
        self._seen: set[tuple[FeedId, str, int]] = set()
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        """Advertise and browse until cancelled; on cancellation unregister and close."""
        while True:
            await self._run_once()
            log.warning("zeroconf cannot rebind sockets (needs >= 0.150); restarting discovery")

    def _ip_version(self) -> IPVersion | None:
        if self._interfaces is not None:
            return None  # zeroconf infers it from the addresses given
        has_v6 = any(":" in a for a in _adapter_addresses(loopback=False))
        return IPVersion.All if socket.has_ipv6 and has_v6 else IPVersion.V4Only

    def _addresses(self) -> list[str]:
        if self._interfaces is not None:
            return list(self._interfaces)
        ipv6 = self._ip_version() is IPVersion.All
        found = _adapter_addresses(loopback=False, ipv6=ipv6)
        return sorted(found or _adapter_addresses(loopback=True, ipv6=ipv6))

    def _service_info(self) -> AsyncServiceInfo:
        label = _label(self._feed_id)
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=self._port,
            properties=service_properties(self._feed_id, self._network_key),
            server=f"{label}.local.",
            parsed_addresses=self._addresses(),
        )

    def _page_info(self) -> AsyncServiceInfo | None:
        if self._page is None:
            return None
        name, port = self._page
        return AsyncServiceInfo(
            self._page_type,
            f"{page_instance_name(name)}.{self._page_type}",
            port=port,
            properties={"path": "/"},
            server=f"{_label(self._feed_id)}.local.",
            parsed_addresses=self._addresses(),
        )

    async def _run_once(self) -> None:
        """One zeroconf instance; returns when it must be rebuilt for new interfaces."""
        choice = InterfaceChoice.All if self._interfaces is None else self._interfaces
        aiozc = AsyncZeroconf(interfaces=choice, ip_version=self._ip_version())
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                try:
                    await self._advertise_and_browse(aiozc, self._service_info())
                finally:
                    self._tasks = None
        finally:
            await aiozc.async_close()  # sends goodbye packets for our service

    async def _advertise_and_browse(self, aiozc: AsyncZeroconf, info: AsyncServiceInfo) -> None:
        browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[self._changed])
        try:
            await aiozc.async_register_service(info, allow_name_change=True)
            log.info("advertising %s on %s port %d", info.name, info.parsed_addresses(), self._port)
            page = self._page_info()
            if page is not None:
                await aiozc.async_register_service(page, allow_name_change=True)
                log.info("advertising the page as %s port %d", page.name, page.port)
            await self._follow_interfaces(aiozc, info, page)
        finally:
            await browser.async_cancel()

    async def _follow_interfaces(
        self, aiozc: AsyncZeroconf, info: AsyncServiceInfo, page: AsyncServiceInfo | None
    ) -> None:
        """Re-announce and rebind when the kernel says an interface or address changed."""
        with InterfaceWatch(poll_s=self._rescan_s) as watch:
            known: set[str] | None = _adapter_addresses(loopback=True)  # after the watch opens
            while known is not None:
                await watch.changed()
                known = await self._on_interfaces(aiozc, info, page, known)

    async def _on_interfaces(
        self,
        aiozc: AsyncZeroconf,
        info: AsyncServiceInfo,
        page: AsyncServiceInfo | None,
        known: set[str],
    ) -> set[str] | None:
        """Read the addresses once; re-announce and rebind. None: zeroconf must restart."""
        can_rebind = hasattr(aiozc, "async_update_interfaces")
        if (current := _adapter_addresses(loopback=True)) != known:
            log.info("interface addresses changed: %s", sorted(current))
            known = current
            if not can_rebind:
                return None
            if (addresses := self._addresses()) != sorted(info.parsed_addresses()):
                # Records first: a new link must never hear our old (maybe loopback) ones.
                for record in (info, page):
                    if record is not None:
                        record.addresses = addresses
                        await aiozc.async_update_service(record)
                log.info("advertising %s on %s", info.name, addresses)
        if can_rebind:
            # On every change told, not only when the set differs: it retries binds that
            # failed, such as an IPv6 address that was still tentative (its DAD ending is an
            # RTM_NEWADDR of its own).
            await aiozc.async_update_interfaces(ip_version=self._ip_version())
        return known

    def _changed(
        self, *, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """Browser callback (in the event loop): resolve added and updated services."""
        if state_change is ServiceStateChange.Removed or self._tasks is None:
            return
        self._tasks.create_task(self._resolve(zeroconf, service_type, name))

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        """Resolve one service and report it if it is a peer of our network."""
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, _RESOLVE_TIMEOUT_MS):
            log.debug("%s did not resolve", name)
            return
        feed_id = parse_properties(info.properties, self._network_key)
        if feed_id is None or feed_id == self._feed_id:
            log.debug("%s ignored: ours, another network or version, or malformed", name)
            return
        v4 = info.parsed_scoped_addresses(IPVersion.V4Only)
        v6 = info.parsed_scoped_addresses(IPVersion.V6Only)
        host = _pick_host(v4, v6, _local_networks())
        if host is None or info.port is None:
            log.debug("%s ignored: no address or port", name)
            return
        seen = (feed_id, host, info.port)
        level = logging.DEBUG if seen in self._seen else logging.INFO
        self._seen.add(seen)
        log.log(level, "peer %s at %s port %d", format_feed_id(feed_id), host, info.port)
        self._on_seen(PeerSeen(feed_id=feed_id, host=host, port=info.port))

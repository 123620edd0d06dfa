"""The LAN listener: bound at start, or, when its address is not on the box yet, once it is.

At boot a box may not have the address it is told to listen on yet (a DHCP lease, a WiFi
hotspot that comes up later). Exiting then would only make systemd restart the service
until its start limit; instead the daemon runs without the listener (control socket, page,
radios) and retries the bind whenever the kernel says an interface or address changed
(with backoff where netlink is missing), saying so once in the log, in STATUS= and in
``meshnode status``. Any other bind failure (port taken, no permission) stays fatal.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import TYPE_CHECKING

from meshnode.errors import LinkError
from meshnode.host.address import format_host_port
from meshnode.links.netlink import InterfaceWatch

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["RETRY_S", "Listener"]

log = logging.getLogger(__name__)

RETRY_S = (0.5, 10.0)  # first and longest pause between binds while the address is away


class Listener:
    """A TCP server on ``host:port`` that waits for the address instead of failing."""

    def __init__(
        self,
        on_inbound: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        host: str,
        port: int,
        *,
        retry_s: tuple[float, float] = RETRY_S,
    ) -> None:
        self._on_inbound = on_inbound
        self.host = host
        self.port = port
        self._retry_s = retry_s
        self.server: asyncio.Server | None = None
        self.waiting = False  # the address is not on this box yet

    @property
    def where(self) -> str:
        """``host:port`` as configured."""
        return format_host_port(self.host, self.port)

    def addresses(self) -> list[str]:
        """Where it listens now (the port the OS chose for port 0); empty while waiting."""
        if self.server is None:
            return []
        names = [sock.getsockname() for sock in self.server.sockets]
        return [format_host_port(str(name[0]), int(name[1])) for name in names]

    async def open(self) -> bool:
        """Bind now: True when listening, False when the address is not on the box yet.

        Raises:
            LinkError: binding failed for another reason (port in use, no permission).
        """
        try:
            self.server = await asyncio.start_server(self._on_inbound, self.host, self.port)
        except OSError as exc:
            if not await self._address_missing(exc):
                raise LinkError(f"cannot listen on {self.where}: {exc.strerror or exc}") from None
            if not self.waiting:
                log.warning(
                    "%s is not on this box (yet): waiting for it to listen on %s",
                    self.host,
                    self.where,
                )
            self.waiting = True
            return False
        if self.waiting:
            log.info("%s appeared: listening on %s", self.host, self.where)
        self.waiting = False
        return True

    async def _address_missing(self, exc: OSError) -> bool:
        """Whether the bind failed for want of the address (EADDRNOTAVAIL).

        asyncio from Python 3.12 on drops that errno ("could not bind on any address"), so
        then a plain bind asks the kernel again.
        """
        if exc.errno is not None:
            return exc.errno == errno.EADDRNOTAVAIL
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError:
            return False
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as again:
                    if again.errno == errno.EADDRNOTAVAIL:
                        return True
        return False

    async def wait_open(self) -> None:
        """Retry ``open`` on each interface change the kernel tells (with backoff where it
        tells none) until it binds (LinkError as ``open`` raises it)."""
        delay, longest = self._retry_s
        with InterfaceWatch(poll_s=longest) as watch:
            while not await self.open():
                if watch.source == "netlink":
                    await watch.changed()  # no timer: an idle box waiting for WiFi sleeps
                    continue
                await asyncio.sleep(delay)
                delay = min(longest, delay * 2)

    def close(self) -> None:
        """Stop listening (nothing to do while waiting)."""
        if self.server is not None:
            self.server.close()

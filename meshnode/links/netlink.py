"""Interface and address changes from the kernel (rtnetlink), so nothing polls the adapters.

A ``NETLINK_ROUTE`` socket joined to ``RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR``
is read with ``loop.add_reader``: the loop sleeps until the kernel says a link or an address
came, went or changed (an IPv6 address finishing DAD is an ``RTM_NEWADDR`` too). Only enough
of each datagram is parsed to tell what changed; the caller then re-reads the addresses once.

A datagram is one or more messages, each 4-byte aligned, in host byte order:

    nlmsghdr   16 bytes   len u32 (header included), type u16, flags u16, seq u32, pid u32
    ifinfomsg  16 bytes   RTM_NEWLINK/RTM_DELLINK: family u8, pad u8, type u16, index i32,
                          flags u32, change u32; then rtattrs (len u16, type u16, data)
    ifaddrmsg   8 bytes   RTM_NEWADDR/RTM_DELADDR: family u8, prefixlen u8, flags u8,
                          scope u8, index u32

``RTM_NEWLINK`` carrying ``IFLA_WIRELESS`` is a Wi-Fi driver event (a scan finished), not a
change of the link, and is ignored. ``NLMSG_OVERRUN``, a datagram cut short, and ``ENOBUFS``
(the kernel dropped messages for us) all count as a change. Where the socket cannot be opened
(not Linux, or not allowed) the watch falls back to waking every ``poll_s``, saying so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "DEFAULT_SETTLE_S",
    "RTMGRP_IPV4_IFADDR",
    "RTMGRP_IPV6_IFADDR",
    "RTMGRP_LINK",
    "InterfaceChanged",
    "InterfaceWatch",
    "MessageType",
    "decode_rtnetlink",
]

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
_NETLINK_ROUTE = 0
_NLMSG_HEADER = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
_IFLA_WIRELESS = 11
_RECV_BYTES = 1 << 16
_MAX_READS_PER_WAKE = 64  # a storm of changes cannot hold the loop; the rest comes next turn
DEFAULT_SETTLE_S = 0.25  # one change arrives as a burst of messages: re-read once, after it


class MessageType(IntEnum):
    """The netlink message types this module reads."""

    NOOP = 1
    ERROR = 2
    DONE = 3
    OVERRUN = 4
    NEWLINK = 16
    DELLINK = 17
    NEWADDR = 20
    DELADDR = 21


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceChanged:
    """The kernel said a link or an address of interface ``index`` changed."""

    kind: MessageType
    index: int
    family: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def _has_attr(data: bytes, start: int, end: int, wanted: int) -> bool:
    """Is there an rtattr of type ``wanted`` in ``data[start:end]``?"""
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size:
            return False
        if kind == wanted:
            return True
        start += _align(length)
    return False


def _decode_one(data: bytes, kind: int, start: int, end: int) -> InterfaceChanged | None:
    """The change one message tells, or None for a message that tells none."""
    if kind in (MessageType.NEWLINK, MessageType.DELLINK):
        if end - start < _IFINFOMSG.size:
            raise DecodeError(f"rtnetlink: link message of {end - start} bytes")
        family, _, index, _, _ = _IFINFOMSG.unpack_from(data, start)
        if kind == MessageType.NEWLINK and _has_attr(
            data, start + _IFINFOMSG.size, end, _IFLA_WIRELESS
        ):
            return None
        return InterfaceChanged(kind=MessageType(kind), index=index, family=family)
    if kind in (MessageType.NEWADDR, MessageType.DELADDR):
        if end - start < _IFADDRMSG.size:
            raise DecodeError(f"rtnetlink: address message of {end - start} bytes")
        family, _, _, _, index = _IFADDRMSG.unpack_from(data, start)
        return InterfaceChanged(kind=MessageType(kind), index=index, family=family)
    if kind == MessageType.OVERRUN:
        return InterfaceChanged(kind=MessageType.OVERRUN, index=0, family=0)
    return None  # NOOP, DONE, ERROR (acks) and types we did not join for


def decode_rtnetlink(data: bytes) -> list[InterfaceChanged]:
    """The link and address changes in one rtnetlink datagram.

    Args:
        data: one datagram as read from the socket (host byte order).

    Returns:
        One ``InterfaceChanged`` per link or address message, in order (``OVERRUN`` for
        messages the kernel dropped); nothing for acks, no-ops and other types.

    Raises:
        DecodeError: a header or body is cut short, or a length is impossible.
    """
    changes: list[InterfaceChanged] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _NLMSG_HEADER.size:
            raise DecodeError(f"rtnetlink: {len(data) - offset} bytes left, not a header")
        length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(data):
            raise DecodeError(f"rtnetlink: message length {length} at offset {offset}")
        change = _decode_one(data, kind, offset + _NLMSG_HEADER.size, offset + length)
        if change is not None:
            changes.append(change)
        offset += _align(length)
    return changes


class InterfaceWatch:
    """Wakes its user when the kernel reports a change; polls every ``poll_s`` without netlink.

    Use inside the running loop: ``with InterfaceWatch() as watch: await watch.changed()``.
    """

    def __init__(self, *, poll_s: float = 60.0, settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.changes = 0  # datagrams that told a change, since open (for tests)
        self._sock: socket.socket | None = None
        self._changed = asyncio.Event()

    @property
    def source(self) -> str:
        """``netlink`` while the kernel tells us, else ``poll``."""
        return "netlink" if self._sock is not None else "poll"

    def __enter__(self) -> InterfaceWatch:
        self._sock = self._open()
        if self._sock is None:
            return self
        try:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._on_readable)
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        log.debug("following interface changes through netlink")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening to the kernel."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _open(self) -> socket.socket | None:
        """A non-blocking NETLINK_ROUTE socket joined to our groups, or None (logged)."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            log.info("no netlink here; looking at the interfaces every %.0f s", self.poll_s)
            return None
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
            sock.setblocking(False)
            sock.bind((0, _GROUPS))
        except OSError as exc:
            if sock is not None:
                sock.close()
            log.info(
                "netlink refused (%s); looking at the interfaces every %.0f s", exc, self.poll_s
            )
            return None
        return sock

    def _on_readable(self) -> None:
        """Drain the socket; wake the waiter when any message told a change."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(_MAX_READS_PER_WAKE):
            try:
                data = sock.recv(_RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    log.warning("netlink read failed (%s); looking every %.0f s", exc, self.poll_s)
                    self.close()
                self._note_change()  # ENOBUFS (messages dropped) or closed: read them anew
                return
            try:
                told = bool(decode_rtnetlink(data))
            except DecodeError as exc:
                log.debug("%s; re-reading the interfaces anyway", exc)
                told = True
            if told:
                self._note_change()

    def _note_change(self) -> None:
        self.changes += 1
        self._changed.set()

    async def changed(self) -> None:
        """Return after the next change (once its burst is over), or after ``poll_s`` without
        netlink; the caller then reads the interfaces once."""
        if self._sock is None:
            await asyncio.sleep(self.poll_s)
            return
        await self._changed.wait()
        await asyncio.sleep(self.settle_s)
        self._changed.clear()

"""systemd's notify protocol, by hand: one datagram per state change to $NOTIFY_SOCKET.

``READY=1`` once the node listens, ``STATUS=...`` lines for ``systemctl status``,
``WATCHDOG=1`` pings at half of $WATCHDOG_USEC (from the event loop, so a hung loop stops
them), ``STOPPING=1`` on the way out. Without $NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

__all__ = ["SD_LISTEN_FDS_START", "Notifier", "listen_fds"]

SD_LISTEN_FDS_START = 3  # the first socket systemd passes (sd_listen_fds(3))

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify states when run under systemd's Type=notify."""

    def __init__(self, env: Mapping[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_s = _watchdog_period_s(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return bool(self._address)

    @property
    def watchdog_period_s(self) -> float | None:
        """How often to send WATCHDOG=1 (half the configured timeout), or None."""
        return self._watchdog_s if self.enabled else None

    def notify(self, *states: str) -> None:
        """Send ``states`` (e.g. "READY=1", "STATUS=...") in one datagram."""
        if not self._address:
            return
        message = "\n".join(s.replace("\n", " ") for s in states).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self._address)
                s.sendall(message)
        except OSError as exc:
            if not self._warned:  # once: a missing notify socket is not worth a log flood
                log.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._warned = True


def _watchdog_period_s(env: Mapping[str, str]) -> float | None:
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        return None
    if pid and (not (pid.isascii() and pid.isdigit()) or int(pid) != os.getpid()):
        return None  # the watchdog is meant for another process
    return int(usec) / 2e6


def listen_fds(env: MutableMapping[str, str]) -> dict[str, int]:
    """Sockets systemd passed to this process, by their FileDescriptorName, once.

    The protocol of sd_listen_fds(3): $LISTEN_PID names this process, $LISTEN_FDS counts
    the descriptors from 3 on, $LISTEN_FDNAMES names them. The variables are removed from
    ``env`` so that child processes do not take the sockets for theirs.
    """
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return {}
    found: dict[str, int] = {}
    for i in range(int(count)):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        name = names[i] if i < len(names) and names[i] else "unknown"
        found.setdefault(name, fd)
    return found

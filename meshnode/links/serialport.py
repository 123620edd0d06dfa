"""A serial device for asyncio: opened exclusively, read without polling, reopened when it returns.

Accepts device paths (``/dev/serial0``, ``/dev/serial/by-id/...``, a pty) and pyserial
URLs (``loop://``, ``socket://host:port``, ``rfc2217://...``). Reads wait on the device's
file descriptor when it has one (no polling loop); URL handlers without one are read in a
worker thread. A device that vanishes (a USB radio unplugged) raises LinkClosed from
``read``; ``open_port`` retries with backoff until it is back. pyserial is imported here
and in nothing else of the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

import serial

from meshnode.errors import LinkClosed

if TYPE_CHECKING:
    import random

__all__ = ["SerialPort", "open_port", "probe"]

log = logging.getLogger(__name__)

_READ_BYTES = 4096
_EMPTY_READS_GONE = 50
_EMPTY_READ_PAUSE_S = 0.02


class SerialPort:
    """An open serial device."""

    def __init__(self, port: serial.SerialBase, name: str) -> None:
        self._port = port
        self.name = name
        self._fd: int | None = None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._fd = port.fileno()
        self._readable = asyncio.Event()
        self._closed = False
        self._empty_reads = 0
        if self._fd is not None:
            asyncio.get_running_loop().add_reader(self._fd, self._readable.set)

    async def read(self) -> bytes:
        """The next bytes from the device; LinkClosed when it is gone."""
        while True:
            if self._closed:
                raise LinkClosed(f"{self.name}: closed")
            if self._fd is None:
                data = await asyncio.to_thread(self._read_blocking)
            else:
                await self._readable.wait()
                self._readable.clear()
                data = self._read_now()
            if data:
                return data
            if self._fd is not None:
                await asyncio.sleep(_EMPTY_READ_PAUSE_S)

    def _read_now(self) -> bytes:
        try:
            waiting = int(getattr(self._port, "in_waiting", 0))
            data = self._port.read(max(waiting, 1)) if waiting else self._port.read(_READ_BYTES)
        except (serial.SerialException, OSError, TypeError) as exc:
            if "returned no data" not in str(exc):
                raise LinkClosed(f"{self.name}: {exc}") from None
            data = b""
        if data:
            self._empty_reads = 0
            return bytes(data)
        # Readable, yet nothing to read: a pty does this when its far end reconfigures;
        # only a run of them means the device went away (a real unplug raises EIO).
        self._empty_reads += 1
        if self._empty_reads >= _EMPTY_READS_GONE:
            raise LinkClosed(f"{self.name}: device disconnected")
        return b""

    def _read_blocking(self) -> bytes:
        try:
            return bytes(self._port.read(_READ_BYTES))
        except (serial.SerialException, OSError, TypeError) as exc:
            raise LinkClosed(f"{self.name}: {exc}") from None

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (in a worker thread: a slow UART must not stall the loop)."""
        if self._fd is not None:
            data = self._write_now(data)  # the kernel takes a frame at once: no thread, no wait
            if not data:
                return
        try:
            await asyncio.to_thread(self._write_all, data)
        except (serial.SerialException, OSError) as exc:
            raise LinkClosed(f"{self.name}: write failed: {exc}") from None

    def _write_now(self, data: bytes) -> bytes:
        """Write what the device takes without blocking; return the rest."""
        try:
            return data[os.write(self._fd, data) :] if self._fd is not None else data
        except BlockingIOError:
            return data
        except OSError as exc:
            raise LinkClosed(f"{self.name}: write failed: {exc}") from None

    def _write_all(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def close(self) -> None:
        """Release the device."""
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(Exception):
            self._port.close()
        self._readable.set()


def _open(url: str, baud: int) -> serial.SerialBase:
    port = serial.serial_for_url(url, baudrate=baud, timeout=0, do_not_open=True)
    with contextlib.suppress(AttributeError, ValueError):
        port.exclusive = True  # POSIX devices: a second opener gets EBUSY
    if url.startswith(("loop://", "socket://", "rfc2217://", "spy://")):
        port.timeout = 0.5  # read in a thread: block briefly, then look again
    port.open()
    return port


def probe(url: str, baud: int, request: bytes, expect: bytes, timeout_s: float = 2.0) -> bool:
    """Open ``url`` (exclusively), write ``request`` and wait for ``expect`` (blocking).

    Raises:
        OSError, ValueError or serial.SerialException (an OSError): it cannot be opened.
    """
    port = _open(url, baud)
    try:
        port.timeout = 0.1
        port.write(request)
        port.flush()
        got, deadline = b"", time.monotonic() + timeout_s
        while expect not in got and time.monotonic() < deadline:
            got += port.read(256)
        return expect in got
    finally:
        port.close()


async def open_port(
    url: str, baud: int, *, name: str, rng: random.Random, retry_max_s: float = 60.0
) -> SerialPort:
    """Open ``url``, retrying with backoff (logged once per outage) until it is there."""
    delay, logged = 1.0, False
    while True:
        try:
            port = await asyncio.to_thread(_open, url, baud)
            if logged:
                log.info("%s: %s is back", name, url)
            return SerialPort(port, name)
        except (serial.SerialException, OSError, ValueError) as exc:
            if not logged:
                log.warning("%s: cannot open %s: %s; retrying", name, url, exc)
                logged = True
            else:
                log.debug("%s: still cannot open %s: %s", name, url, exc)
        await asyncio.sleep(delay * rng.uniform(0.5, 1.0))
        delay = min(retry_max_s, delay * 2)

"""TCP links: the shs1 secret handshake, then replication frames inside box-stream.

Layers on the wire, inside one TCP connection::

    shs1 handshake      4 messages, 320 bytes (secure/shs.py); or a key query and close
    box-stream          34-byte header per packet of up to 4096 bytes (secure/boxstream.py)
    stream frames       varint length || frame (codec/framing.py)
    frames              replication frames (codec/frame.py) and link PING/PONG

A link sends a PING every third of the idle timeout and times the PONG (round-trip
time); a link that receives nothing for the idle timeout is closed. Handshake, box-stream
and framing errors close that connection only, as LinkError with the reason. Frames to
send are queued without waiting; one writer task encrypts whatever is queued as one run
of packets and reports the entry bytes it moved once the socket has taken them (the
replication window).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from meshnode.codec.frame import FrameType
from meshnode.codec.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    LINK_CONTROL,
    LinkControl,
    StreamDeframer,
    decode_link_control,
    encode_link_control,
    encode_stream_frame,
)
from meshnode.errors import DecodeError, LinkClosed, LinkError, LinkTimeout
from meshnode.host.address import format_host_port
from meshnode.secure.keyquery import (
    ANSWER_BYTES,
    QUERY_BYTES,
    Opening,
    answer_key_query,
    classify_opening,
    decode_key_answer,
    encode_key_query,
)
from meshnode.secure.shs import (
    ACCEPT_BYTES,
    AUTH_BYTES,
    HELLO_BYTES,
    ClientHandshake,
    ServerHandshake,
    generate_ephemeral_secret,
)
from meshnode.types import PeerId

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from meshnode.secure.identity import Identity
    from meshnode.secure.shs import HandshakeResult

__all__ = ["HandshakeFailed", "TcpLink", "TcpSettings", "accept", "dial", "query_key"]

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 16
# Far above what the replication window (entries) and notes ever queue: a peer that lets
# this much pile up is not reading, and is dropped rather than allowed to grow our memory.
_MAX_QUEUED_BYTES = 8 << 20
_ENTRY = FrameType.ENTRY
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpSettings:
    """Timeouts and limits of TCP links."""

    handshake_timeout_s: float = 15.0
    idle_timeout_s: float = 90.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES


class HandshakeFailed(LinkError):
    """The secret handshake or key query did not complete; ``address`` names the other end."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"handshake with {address} failed: {reason}")
        self.address = address
        self.reason = reason


def _peer_address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_host_port(str(peer[0]), int(peer[1]))
    return "unknown address"


async def _handshake_io(
    address: str,
    writer: asyncio.StreamWriter,
    timeout_s: float,
    step: Callable[[], Coroutine[Any, Any, _T]],
) -> _T:
    """Run ``step`` under the handshake timeout, mapping its errors to HandshakeFailed."""
    try:
        async with asyncio.timeout(timeout_s):
            return await step()
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except asyncio.IncompleteReadError:
        reason = "the other side closed the connection (another network key, or a wrong key?)"
    except DecodeError as exc:
        reason = str(exc)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    writer.close()
    raise HandshakeFailed(address, reason)


async def _open(
    host: str, port: int, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = format_host_port(host, port)
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.open_connection(host, port)
    except TimeoutError:
        raise LinkTimeout(f"{address}: no connection within {timeout_s:g} s") from None
    except OSError as exc:
        raise LinkError(f"{address}: {exc.strerror or exc}") from None


async def query_key(host: str, port: int, *, network_key: bytes, timeout_s: float) -> PeerId:
    """Ask the node at host:port for its key (secure/keyquery.py); HandshakeFailed if not."""
    reader, writer = await _open(host, port, timeout_s)
    address = format_host_port(host, port)
    query = encode_key_query(network_key)

    async def step() -> PeerId:
        writer.write(query)
        return decode_key_answer(await reader.readexactly(ANSWER_BYTES), query, network_key)

    key = await _handshake_io(address, writer, timeout_s, step)
    writer.close()
    return key


async def dial(
    host: str,
    port: int,
    *,
    identity: Identity,
    network_key: bytes,
    server: PeerId,
    settings: TcpSettings,
) -> TcpLink:
    """Connect and run the client side of the handshake."""
    reader, writer = await _open(host, port, settings.handshake_timeout_s)
    address = format_host_port(host, port)
    hs = ClientHandshake(
        identity=identity,
        server=server,
        network_key=network_key,
        ephemeral_secret=generate_ephemeral_secret(),
    )

    async def step() -> HandshakeResult:
        writer.write(hs.start())
        writer.write(hs.receive(await reader.readexactly(HELLO_BYTES)))
        hs.receive(await reader.readexactly(ACCEPT_BYTES))
        assert hs.result is not None
        return hs.result

    result = await _handshake_io(address, writer, settings.handshake_timeout_s, step)
    return TcpLink(reader, writer, result, address=address, outbound=True, settings=settings)


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    identity: Identity,
    network_key: bytes,
    settings: TcpSettings,
) -> TcpLink | None:
    """Run the server side of the handshake; None after answering a key query."""
    address = _peer_address(writer)
    hs = ServerHandshake(
        identity=identity, network_key=network_key, ephemeral_secret=generate_ephemeral_secret()
    )

    async def step() -> HandshakeResult | None:
        first = await reader.readexactly(QUERY_BYTES)
        opening = classify_opening(first, network_key)
        if opening is Opening.KEY_QUERY:
            writer.write(answer_key_query(first, network_key, PeerId(identity.feed_id)))
            await writer.drain()
            return None
        if opening is Opening.UNKNOWN:
            raise DecodeError(f"first message is {opening.value}")
        writer.write(hs.receive(first))
        writer.write(hs.receive(await reader.readexactly(AUTH_BYTES)))
        return hs.result

    result = await _handshake_io(address, writer, settings.handshake_timeout_s, step)
    if result is None:
        writer.close()
        return None
    return TcpLink(reader, writer, result, address=address, outbound=False, settings=settings)


class TcpLink:
    """An authenticated connection to one peer, carrying frames both ways."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        result: HandshakeResult,
        *,
        address: str,
        outbound: bool,
        settings: TcpSettings,
    ) -> None:
        self.peer = result.peer
        self.address = address
        self.outbound = outbound
        self.settings = settings
        self.connected_at = time.monotonic()
        # The handshake's bytes count: 176 from the client, 144 from the server.
        self.bytes_in = AUTH_BYTES + HELLO_BYTES if not outbound else ACCEPT_BYTES + HELLO_BYTES
        self.bytes_out = ACCEPT_BYTES + HELLO_BYTES if not outbound else AUTH_BYTES + HELLO_BYTES
        self.rtt_s: float | None = None
        self._reader = reader
        self._writer = writer
        self._encoder = result.encoder()
        self._decoder = result.decoder()
        self._deframer = StreamDeframer(settings.max_frame_bytes)
        self._out = bytearray()
        self._out_entry_bytes = 0
        self._wake = asyncio.Event()
        self._pings: dict[bytes, float] = {}
        self._closing = False
        self._write_error = ""

    def send(self, frames: list[bytes]) -> None:
        """Queue frames; the writer task sends them. A peer that stops reading is dropped."""
        if self._closing:
            return
        for frame in frames:
            self._out += encode_stream_frame(frame)
            if frame[0] == _ENTRY:
                self._out_entry_bytes += len(frame)
        if len(self._out) > _MAX_QUEUED_BYTES:
            self._write_error = f"the peer does not read ({len(self._out)} bytes queued)"
            self._out.clear()
            self._writer.transport.abort()
            return
        self._wake.set()

    def close(self) -> None:
        """End the link on purpose: what is queued, then the box-stream goodbye."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError, RuntimeError):
            if self._out:
                self._writer.write(self._encoder.encode(bytes(self._out)))
            self._writer.write(self._encoder.goodbye())
        self._out.clear()
        self._writer.close()
        self._wake.set()

    def abort(self) -> None:
        """Drop the connection at once (a peer that broke the rules)."""
        self._closing = True
        self._writer.transport.abort()
        self._wake.set()

    async def run(
        self,
        on_frames: Callable[[TcpLink, list[bytes]], Awaitable[None] | None],
        on_sent: Callable[[TcpLink, int], None],
    ) -> None:
        """Read, write and ping until the link ends; LinkError says why when it failed.

        ``on_frames`` may return an awaitable: the link reads no more until it is done."""
        helpers = [
            asyncio.create_task(self._write_loop(on_sent)),
            asyncio.create_task(self._ping_loop()),
        ]
        try:
            await self._read_loop(on_frames)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if not self._closing:
                self._closing = True
                self._writer.close()

    async def _read_loop(
        self, on_frames: Callable[[TcpLink, list[bytes]], Awaitable[None] | None]
    ) -> None:
        idle_s = self.settings.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    data = await self._reader.read(_READ_BYTES)
            except TimeoutError:
                raise LinkTimeout(f"{self.address}: nothing received for {idle_s:g} s") from None
            except OSError as exc:
                if self._closing:
                    return
                reason = self._write_error or exc.strerror or str(exc)
                raise LinkClosed(f"{self.address}: {reason}") from None
            if not data:
                if self._closing or self._decoder.closed:
                    return
                reason = self._write_error or "connection closed without goodbye"
                raise LinkClosed(f"{self.address}: {reason}")
            self.bytes_in += len(data)
            try:
                frames = self._frames(data)
            except DecodeError as exc:
                raise LinkError(f"{self.address}: {exc}") from None
            if frames:
                waiting = on_frames(self, frames)
                if waiting is not None:
                    await waiting  # the node is behind: read on once it caught up
            if self._decoder.closed:
                return

    def _frames(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for body in self._decoder.feed(data):
            for frame in self._deframer.feed(body):
                if frame[0] == LINK_CONTROL:
                    self._on_link_control(frame)
                else:
                    frames.append(frame)
        return frames

    def _on_link_control(self, frame: bytes) -> None:
        kind, token = decode_link_control(frame)
        if kind is LinkControl.PING:
            self.send([encode_link_control(LinkControl.PONG, token)])
        else:
            sent_at = self._pings.pop(token, None)
            if sent_at is not None:
                self.rtt_s = time.monotonic() - sent_at

    async def _write_loop(self, on_sent: Callable[[TcpLink, int], None]) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self._closing or not self._out:
                continue
            data, entry_bytes = bytes(self._out), self._out_entry_bytes
            self._out.clear()
            self._out_entry_bytes = 0
            packets = self._encoder.encode(data)
            try:
                self._writer.write(packets)
                # A peer that stops reading would hold this task (and our window) forever.
                async with asyncio.timeout(self.settings.idle_timeout_s):
                    await self._writer.drain()
            except TimeoutError:
                idle_s = self.settings.idle_timeout_s
                self._write_error = f"the peer took nothing we sent for {idle_s:g} s"
                self._writer.transport.abort()  # the read loop sees the end and reports it
                return
            except (OSError, RuntimeError) as exc:
                self._write_error = f"write failed: {exc}"
                self._writer.transport.abort()
                return
            self.bytes_out += len(packets)
            on_sent(self, entry_bytes)

    async def _ping_loop(self) -> None:
        interval_s = self.settings.idle_timeout_s / 3
        while True:
            token = os.urandom(8)
            self._pings = {token: time.monotonic()}  # only the latest PING is timed
            self.send([encode_link_control(LinkControl.PING, token)])
            await asyncio.sleep(interval_s)

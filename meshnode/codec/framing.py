"""Stream framing: replication frames over a byte stream (TCP inside box-stream, a cable).

Each frame is ``varint(length) || frame``; a length of 0 is never sent (frames are never
empty) and is refused. ``StreamDeframer`` takes chunks cut anywhere and returns whole
frames; a length over ``max_frame_bytes`` raises DecodeError before any of the body is
buffered, so a hostile peer cannot make us hold more than one frame.

Link control frames belong to the link, not to replication: their first byte is 0x00,
which no replication FrameType uses::

    PING   0x00 0x01 token (8 bytes)   keepalive and round-trip probe; answer with PONG
    PONG   0x00 0x02 token (8 bytes)   echoes the PING's token

A link sends a PING every third of its idle timeout, so an idle but healthy link is never
closed by the peer's idle timeout, and times the PONG for the round-trip time.
"""

from __future__ import annotations

from enum import IntEnum

from meshnode.codec.varint import MAX_VARINT_BYTES, decode_varint, encode_varint
from meshnode.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "LINK_CONTROL",
    "LinkControl",
    "StreamDeframer",
    "decode_link_control",
    "encode_link_control",
    "encode_stream_frame",
]

DEFAULT_MAX_FRAME_BYTES = 65536
LINK_CONTROL = 0x00
_TOKEN_BYTES = 8


class LinkControl(IntEnum):
    """Second byte of a link control frame."""

    PING = 1
    PONG = 2


def encode_link_control(kind: LinkControl, token: bytes) -> bytes:
    """A PING or PONG frame carrying an 8-byte token."""
    if len(token) != _TOKEN_BYTES:
        raise ValueError(f"link control token must be {_TOKEN_BYTES} bytes")
    return bytes((LINK_CONTROL, kind)) + token


def decode_link_control(frame: bytes) -> tuple[LinkControl, bytes]:
    """Kind and token of a frame whose first byte is LINK_CONTROL; DecodeError if malformed."""
    if not frame or frame[0] != LINK_CONTROL:
        raise DecodeError("not a link control frame")
    if len(frame) != 2 + _TOKEN_BYTES:
        raise DecodeError(f"link control frame of {len(frame)} bytes, expected {2 + _TOKEN_BYTES}")
    try:
        kind = LinkControl(frame[1])
    except ValueError:
        raise DecodeError(f"unknown link control kind {frame[1]}") from None
    return kind, frame[2:]


def encode_stream_frame(frame: bytes) -> bytes:
    """Length-prefix one non-empty frame."""
    if not frame:
        raise ValueError("frames are never empty")
    return encode_varint(len(frame)) + frame


class StreamDeframer:
    """Reassembles length-prefixed frames from arbitrary chunks."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._need = 1  # bytes the buffer must hold before another frame can complete

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return every frame now complete.

        Raises:
            DecodeError: a zero or oversized length, or a malformed length prefix.
        """
        self._buf += chunk
        if len(self._buf) < self._need:
            return []  # a large frame trickling in: do not re-parse it on every chunk
        frames: list[bytes] = []
        pos = 0
        buf = bytes(self._buf)
        while pos < len(buf):
            try:
                size, start = decode_varint(buf, pos)
            except DecodeError:
                if len(buf) - pos < MAX_VARINT_BYTES and buf[-1] & 0x80:
                    self._need = len(buf) - pos + 1  # the length prefix itself is cut
                    break
                raise
            if size == 0 or size > self.max_frame_bytes:
                raise DecodeError(f"frame length {size} outside 1..{self.max_frame_bytes}")
            if start + size > len(buf):
                self._need = start + size - pos
                break
            frames.append(buf[start : start + size])
            pos = start + size
        else:
            self._need = 1
        del self._buf[:pos]
        return frames

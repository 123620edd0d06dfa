"""KISS framing: frames over a serial byte stream to a TNC, RNode or bare radio module.

A frame on the wire (K3MC/KA9Q KISS)::

    FEND (0xC0) || escape(type || data) || FEND (0xC0)

    type    1 byte   port << 4 | command; port 0-15, command 0-15 (0 DATA, 1 TXDELAY,
                     2 PERSISTENCE, 3 SLOTTIME, 4 TXTAIL, 5 FULLDUPLEX, 6 SETHARDWARE);
                     the whole byte 0xFF is RETURN (leave KISS), decoded as port 0
    data    rest     the link packet or the command's argument (may be empty)

    escape: 0xC0 -> 0xDB 0xDC (FESC TFEND), 0xDB -> 0xDB 0xDD (FESC TFESC); the type byte
    is escaped too (port 12 DATA is 0xC0). RNode's one-byte command codes (0x21 STAT_RX,
    0x48 PLATFORM, ...) are the same byte read as port and command nibbles.

Budget: 3 bytes (two FENDs and the type) plus one per escaped byte: +0.8 % on average for
random data, twice the size (+3) at worst.

``KissDecoder`` is a streaming receiver for a noisy line. It starts by hunting for a FEND,
so bytes before the first FEND are skipped; every FEND ends one frame and starts the next.
Empty frames (FEND FEND) are ignored. A frame with an invalid escape (FESC followed by
anything but TFEND or TFESC) or with more than ``max_frame_bytes`` of data is dropped and
counted in ``dropped``, and the decoder hunts for the next FEND; it never raises, because
line noise is normal on serial. Memory is bounded by ``max_frame_bytes + 1``, and the
frames and counters do not depend on how the input is chunked.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = [
    "FEND",
    "FESC",
    "TFEND",
    "TFESC",
    "KissCommand",
    "KissDecoder",
    "KissDropReason",
    "KissFrame",
    "encode_kiss",
]

FEND = 0xC0
FESC = 0xDB
TFEND = 0xDC
TFESC = 0xDD
_RETURN_TYPE = 0xFF
_FEND_BYTE = bytes((FEND,))
_FESC_BYTE = bytes((FESC,))
_SPECIAL = re.compile(rb"[\xc0\xdb]")  # FEND or FESC


class KissCommand(IntEnum):
    """Low nibble of the type byte (RETURN is the whole byte 0xFF)."""

    DATA = 0
    TX_DELAY = 1
    PERSISTENCE = 2
    SLOT_TIME = 3
    TX_TAIL = 4
    FULL_DUPLEX = 5
    SET_HARDWARE = 6
    RETURN = 0xFF


class KissDropReason(StrEnum):
    """Why the decoder dropped a frame."""

    BAD_ESCAPE = "bad_escape"
    OVERSIZE = "oversize"


@dataclass(frozen=True, slots=True, kw_only=True)
class KissFrame:
    """One decoded KISS frame."""

    port: int
    command: int
    data: bytes

    @property
    def type_byte(self) -> int:
        """The frame's first byte (RNode reads it as one command code)."""
        if self.command == KissCommand.RETURN:
            return _RETURN_TYPE
        return self.port << 4 | self.command


def _type_byte(command: int, port: int) -> int:
    """Type byte for (command, port); ValueError when it cannot be sent."""
    if not 0 <= port <= 0x0F:
        raise ValueError(f"KISS port {port} outside 0..15")
    if command == KissCommand.RETURN:
        if port != 0:
            raise ValueError("KISS RETURN (0xFF) has no port")
        return _RETURN_TYPE
    if not 0 <= command <= 0x0F:
        raise ValueError(f"KISS command {command} outside 0..15 and not 0xFF")
    if port << 4 | command == _RETURN_TYPE:
        raise ValueError("KISS type byte 0xFF is reserved for RETURN")
    return port << 4 | command


def encode_kiss(data: bytes, *, command: int = 0, port: int = 0) -> bytes:
    """FEND, escaped type byte and data, FEND.

    Raises:
        ValueError: a port outside 0..15, a command outside 0..15 and 0xFF, or port 15
            with command 15 (that type byte is RETURN).
    """
    body = bytes((_type_byte(command, port),)) + data
    # FESC first, or the FESCs that escape FEND would be escaped again.
    body = body.replace(_FESC_BYTE, bytes((FESC, TFESC))).replace(_FEND_BYTE, bytes((FESC, TFEND)))
    return _FEND_BYTE + body + _FEND_BYTE


class KissDecoder:
    """Streaming KISS receiver: chunks in, whole frames out; noise is counted, never raised."""

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must not be negative")
        self.max_frame_bytes = max_frame_bytes
        self.dropped: Counter[KissDropReason] = Counter()
        self.skipped_bytes = 0  # line noise: bytes seen while hunting for a FEND
        self._limit = max_frame_bytes + 1  # the type byte is not data
        self._buf = bytearray()  # unescaped type byte and data of the frame being built
        self._hunting = True
        self._escaped = False

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[KissFrame]:
        """Add bytes; return every frame now complete."""
        frames: list[KissFrame] = []
        pos, end = 0, len(chunk)
        while pos < end:
            if self._hunting:
                pos = self._hunt(chunk, pos)
            elif self._escaped:
                pos = self._unescape(chunk, pos)
            else:
                pos = self._copy(chunk, pos, frames)
        return frames

    def _hunt(self, chunk: bytes, pos: int) -> int:
        """Skip to just past the next FEND, where a frame starts."""
        fend = chunk.find(FEND, pos)
        if fend < 0:
            self.skipped_bytes += len(chunk) - pos
            return len(chunk)
        self.skipped_bytes += fend - pos
        self._start()
        return fend + 1

    def _unescape(self, chunk: bytes, pos: int) -> int:
        """Resolve the byte after a FESC."""
        self._escaped = False
        byte = chunk[pos]
        if byte not in (TFEND, TFESC):
            self._drop(KissDropReason.BAD_ESCAPE)
            if byte == FEND:
                self._start()  # FESC FEND: the FEND itself is the resynchronisation point
        elif len(self._buf) >= self._limit:
            self._drop(KissDropReason.OVERSIZE)
        else:
            self._buf.append(FEND if byte == TFEND else FESC)
        return pos + 1

    def _copy(self, chunk: bytes, pos: int, frames: list[KissFrame]) -> int:
        """Copy plain bytes up to the next FESC or FEND and act on it."""
        special = _SPECIAL.search(chunk, pos)
        stop = len(chunk) if special is None else special.start()
        room = self._limit - len(self._buf)
        if stop - pos > room:
            self._drop(KissDropReason.OVERSIZE)
            return pos + room + 1  # hunting resumes after the first byte past the limit
        self._buf += chunk[pos:stop]
        if special is None:
            return stop
        if chunk[stop] == FESC:
            self._escaped = True
        else:
            if self._buf:
                frames.append(self._frame())
            self._start()
        return stop + 1

    def _frame(self) -> KissFrame:
        """The finished frame in the buffer."""
        kind = self._buf[0]
        data = bytes(self._buf[1:])
        if kind == _RETURN_TYPE:
            return KissFrame(port=0, command=_RETURN_TYPE, data=data)
        return KissFrame(port=kind >> 4, command=kind & 0x0F, data=data)

    def _start(self) -> None:
        """A FEND was read: begin an empty frame."""
        self._buf.clear()
        self._hunting = False
        self._escaped = False

    def _drop(self, reason: KissDropReason) -> None:
        """Discard the frame being built and hunt for the next FEND."""
        self.dropped[reason] += 1
        self._buf.clear()
        self._hunting = True
        self._escaped = False

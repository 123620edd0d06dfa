"""Link packets: checksummed, and fragmented to a link MTU (radio, or KISS over serial).

A link packet is one datagram of at most ``mtu_bytes`` (E22 240, RNode 254, a serial
cable about 1024)::

    header      1 byte    bit 7 MORE: more fragments follow; bits 0-6 fragment index
    message_id  1 byte    absent when header is 0x00; per sender, the caller's counter
                          mod 256, one value per fragmented message
    payload     1+ bytes  a whole message (header 0x00) or fragment ``index`` of one
    crc         2 bytes   CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection,
                          no final XOR) of every byte before it, big-endian

Header 0xFF (index 127 with MORE, which no message has: there is no fragment 128) is a
link control packet of a cable's per-fragment repair, specified in radio/repair.py.

Header 0x00 (index 0, no MORE) is a whole message in one packet: nothing to reassemble,
so no message id. A fragmented message is packets index 0..n-1, MORE set on all but the
last, every payload but the last exactly ``mtu_bytes - 4`` bytes.

Budget: a whole message costs 3 bytes (``max_payload``: 237 at MTU 240, 251 at 254, 117
at 120); a fragment costs 4. ``max_message`` is 128 * (mtu_bytes - 4): 30,208 at 240,
14,848 at 120, below a 9,216-byte replication frame only when the MTU is under 76. A
9,216-byte frame at MTU 240 is 40 packets carrying 160 bytes of overhead (1.7 %).

CRC-16, not CRC-32: a garbled packet passes with probability 2**-16 (1 in 65,536); the
polynomial catches every odd number of bit errors, every burst up to 16 bits, and every
1- to 3-bit error in the 4,093 bytes before it (Hamming distance 4 to 32,751 bits). On
air the LoRa PHY CRC has already dropped most damage, so this one mainly guards the
unchecksummed serial hop (KISS, transparent UART modules). A corrupt packet that slips
through is then caught by the replication decoders, signatures and hashes, costing one
re-request; 2 more bytes on every packet (1.7 % of a 120-byte packet) would buy nothing.

Reassembly on a shared broadcast channel is keyed by the caller's ``sender`` (the link
source) and holds at most one partial message per sender: a sender sends the fragments
of one message back to back and in order (whole-message packets may go between them).
So a fragment that does not continue its sender's partial message means a fragment was
lost, and that message is dropped; there are no ACKs, the replication layer asks again.
Memory is bounded by ``max_partials * max_message_bytes``.
"""

from __future__ import annotations

import binascii
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = [
    "DEFAULT_MAX_PARTIALS",
    "FRAGMENT_OVERHEAD_BYTES",
    "MAX_FRAGMENTS",
    "MIN_MTU_BYTES",
    "SINGLE_OVERHEAD_BYTES",
    "LinkPacket",
    "Reassembler",
    "ReassemblyDropReason",
    "decode_link_packet",
    "encode_link_packet",
    "fragment",
    "max_message",
    "max_payload",
    "reassembly_key",
]

SINGLE_OVERHEAD_BYTES = 3  # header, CRC
FRAGMENT_OVERHEAD_BYTES = 4  # header, message id, CRC
MIN_MTU_BYTES = FRAGMENT_OVERHEAD_BYTES + 1
MAX_FRAGMENTS = 128
DEFAULT_MAX_PARTIALS = 16
_MORE = 0x80
_INDEX_MASK = 0x7F
_CRC_BYTES = 2
_CRC_INIT = 0xFFFF


def _crc(data: bytes) -> bytes:
    """CRC-16/CCITT-FALSE, big-endian (binascii.crc_hqx is this CRC given init 0xFFFF)."""
    return binascii.crc_hqx(data, _CRC_INIT).to_bytes(_CRC_BYTES, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkPacket:
    """A whole message (message_id None), or fragment ``index`` of a longer one."""

    payload: bytes
    index: int = 0
    more: bool = False
    message_id: int | None = None


def encode_link_packet(packet: LinkPacket) -> bytes:
    """Header, message id for a fragment, payload, CRC.

    Raises:
        ValueError: an empty payload, an index outside 0..127, a message id outside
            0..255, or a message id given (or missing) against the header's rule.
    """
    if not packet.payload:
        raise ValueError("link packet payloads are never empty")
    if not 0 <= packet.index <= _INDEX_MASK:
        raise ValueError(f"fragment index {packet.index} outside 0..{_INDEX_MASK}")
    header = (_MORE if packet.more else 0) | packet.index
    if packet.message_id is None:
        if header:
            raise ValueError("a fragment needs a message id")
        body = b"\x00" + packet.payload
    else:
        if not header:
            raise ValueError("a whole message (index 0, no more) has no message id")
        if not 0 <= packet.message_id <= 0xFF:
            raise ValueError(f"message id {packet.message_id} outside 0..255")
        body = bytes((header, packet.message_id)) + packet.payload
    return body + _crc(body)


def decode_link_packet(raw: bytes) -> LinkPacket:
    """Parse and check one link packet.

    Raises:
        DecodeError: shorter than 4 bytes, a CRC mismatch, or a fragment without payload.
    """
    if len(raw) < SINGLE_OVERHEAD_BYTES + 1:
        raise DecodeError(f"link packet of {len(raw)} bytes, at least 4")
    body = raw[:-_CRC_BYTES]
    if _crc(body) != raw[-_CRC_BYTES:]:
        raise DecodeError("link packet CRC mismatch")
    header = body[0]
    if header == 0:
        return LinkPacket(payload=body[1:])
    if len(body) < 3:
        raise DecodeError("fragment without payload")
    return LinkPacket(
        payload=body[2:],
        index=header & _INDEX_MASK,
        more=bool(header & _MORE),
        message_id=body[1],
    )


def max_payload(mtu_bytes: int) -> int:
    """Largest message that goes out as one packet; ValueError for an MTU under 5."""
    if mtu_bytes < MIN_MTU_BYTES:
        raise ValueError(f"link MTU {mtu_bytes} bytes is below {MIN_MTU_BYTES}")
    return mtu_bytes - SINGLE_OVERHEAD_BYTES


def max_message(mtu_bytes: int) -> int:
    """Largest message ``fragment`` accepts; ValueError for an MTU under 5."""
    max_payload(mtu_bytes)
    return MAX_FRAGMENTS * (mtu_bytes - FRAGMENT_OVERHEAD_BYTES)


def fragment(message: bytes, *, mtu_bytes: int, message_id: int) -> list[bytes]:
    """Cut one message into link packets of at most ``mtu_bytes``.

    Raises:
        ValueError: an empty message, an MTU under 5, a message id outside 0..255, or a
            message over ``max_message(mtu_bytes)``.
    """
    whole = max_payload(mtu_bytes)
    if not message:
        raise ValueError("messages are never empty")
    if not 0 <= message_id <= 0xFF:
        raise ValueError(f"message id {message_id} outside 0..255")
    if len(message) <= whole:
        return [encode_link_packet(LinkPacket(payload=message))]
    size = mtu_bytes - FRAGMENT_OVERHEAD_BYTES
    count = -(-len(message) // size)
    if count > MAX_FRAGMENTS:
        raise ValueError(
            f"message of {len(message)} bytes needs {count} fragments at MTU {mtu_bytes},"
            f" at most {MAX_FRAGMENTS}"
        )
    return [
        encode_link_packet(
            LinkPacket(
                payload=message[i * size : (i + 1) * size],
                index=i,
                more=i < count - 1,
                message_id=message_id,
            )
        )
        for i in range(count)
    ]


def reassembly_key(packet: bytes) -> int:
    """What tells messages apart on a link without sender addresses: the message id
    of a fragment (0..255), or -1 for a whole message or bytes too short to say."""
    if len(packet) < 2 or packet[0] == 0:
        return -1
    return packet[1]


class ReassemblyDropReason(StrEnum):
    """Why the reassembler dropped a packet (first four) or a partial message (the rest)."""

    BAD_CRC = "bad_crc"  # corrupted on air or on the cable
    MALFORMED = "malformed"  # too short, or a fragment without payload
    DUPLICATE = "duplicate"  # a fragment index already received
    OUT_OF_ORDER = "out_of_order"  # continues no partial message: an earlier one was lost
    LOST = "lost"  # a later fragment or another message from the sender came first
    TIMED_OUT = "timed_out"  # no fragment for timeout_s
    EVICTED = "evicted"  # max_partials reached: the least recently fed is dropped
    TOO_LARGE = "too_large"  # over max_message_bytes


@dataclass(slots=True)
class _Partial:
    """A message being reassembled from one sender."""

    message_id: int
    next_index: int
    chunks: list[bytes]
    size: int
    last_s: float


class Reassembler:
    """Rebuilds messages from link packets of many interleaved senders."""

    def __init__(
        self,
        max_message_bytes: int,
        timeout_s: float,
        *,
        max_partials: int = DEFAULT_MAX_PARTIALS,
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if max_partials < 1:
            raise ValueError("max_partials must be at least 1")
        self.max_message_bytes = max_message_bytes
        self.timeout_s = timeout_s
        self.max_partials = max_partials
        self.dropped: Counter[ReassemblyDropReason] = Counter()
        # Least recently fed first: a sender is re-inserted on every fragment.
        self._partials: dict[Hashable, _Partial] = {}

    @property
    def partials(self) -> int:
        """Partial messages held."""
        return len(self._partials)

    @property
    def buffered(self) -> int:
        """Payload bytes held for partial messages."""
        return sum(p.size for p in self._partials.values())

    def next_deadline(self) -> float | None:
        """When the next partial message times out; None when none is held."""
        if not self._partials:
            return None
        return min(p.last_s for p in self._partials.values()) + self.timeout_s

    def expire(self, now: float) -> int:
        """Drop partial messages that got no fragment for timeout_s; return how many."""
        stale = [s for s, p in self._partials.items() if now >= p.last_s + self.timeout_s]
        for sender in stale:
            del self._partials[sender]
            self._drop(ReassemblyDropReason.TIMED_OUT)
        return len(stale)

    def feed(self, sender: Hashable, packet: bytes, now: float) -> bytes | None:
        """Take one link packet from ``sender``; return a message once it is whole."""
        self.expire(now)
        try:
            link = decode_link_packet(packet)
        except DecodeError:
            self._drop(self._why_undecodable(packet))
            return None
        if link.message_id is None:
            if len(link.payload) > self.max_message_bytes:
                self._drop(ReassemblyDropReason.TOO_LARGE)
                return None
            return link.payload
        partial = self._partials.get(sender)
        if partial is not None and partial.message_id == link.message_id:
            if link.index < partial.next_index:
                self._drop(ReassemblyDropReason.DUPLICATE)
                return None
            if link.index == partial.next_index:
                return self._append(sender, partial, link, now)
        if partial is not None:
            del self._partials[sender]
            self._drop(ReassemblyDropReason.LOST)
        if link.index != 0:
            self._drop(ReassemblyDropReason.OUT_OF_ORDER)
            return None
        self._start(sender, link, now)
        return None

    def _start(self, sender: Hashable, link: LinkPacket, now: float) -> None:
        """Hold fragment 0 of a new message, evicting the least recently fed if full."""
        assert link.message_id is not None
        if len(link.payload) > self.max_message_bytes:
            self._drop(ReassemblyDropReason.TOO_LARGE)
            return
        while len(self._partials) >= self.max_partials:
            del self._partials[next(iter(self._partials))]
            self._drop(ReassemblyDropReason.EVICTED)
        self._partials[sender] = _Partial(
            message_id=link.message_id,
            next_index=1,
            chunks=[link.payload],
            size=len(link.payload),
            last_s=now,
        )

    def _append(
        self, sender: Hashable, partial: _Partial, link: LinkPacket, now: float
    ) -> bytes | None:
        """Add the next fragment; the whole message when it was the last."""
        del self._partials[sender]
        if partial.size + len(link.payload) > self.max_message_bytes:
            self._drop(ReassemblyDropReason.TOO_LARGE)
            return None
        partial.chunks.append(link.payload)
        if not link.more:
            return b"".join(partial.chunks)
        partial.size += len(link.payload)
        partial.next_index += 1
        partial.last_s = now
        self._partials[sender] = partial
        return None

    @staticmethod
    def _why_undecodable(packet: bytes) -> ReassemblyDropReason:
        """BAD_CRC when the packet is long enough to carry a CRC and it does not match."""
        if len(packet) > SINGLE_OVERHEAD_BYTES and _crc(packet[:-_CRC_BYTES]) != packet[-2:]:
            return ReassemblyDropReason.BAD_CRC
        return ReassemblyDropReason.MALFORMED

    def _drop(self, reason: ReassemblyDropReason) -> None:
        """Count one dropped packet or partial message."""
        self.dropped[reason] += 1

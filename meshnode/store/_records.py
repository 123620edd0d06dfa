"""Log records of the flat-file store: framing, payloads, offsets and the segment scanner.

The byte layout is specified in the docstring of ``meshnode.store.flatfile``.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import KEY_BYTES
from meshnode.types import FeedId, PeerId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ENTRY_KINDS",
    "HEADER",
    "HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MISSING",
    "Damage",
    "Kind",
    "Record",
    "decode_evict",
    "decode_fork",
    "decode_peer",
    "encode_evict",
    "encode_fork",
    "encode_peer",
    "encode_record",
    "entry_key",
    "pack_offset",
    "read_record",
    "scan_segment",
    "segment_of",
]

HEADER = struct.Struct("<IIB")
HEADER_BYTES = HEADER.size
# No record comes near this; a larger length field can only be damage.
MAX_PAYLOAD_BYTES = 16 << 20
_POS_BITS = 40
_POS_MASK = (1 << _POS_BITS) - 1
# Index slot of an entry whose record was lost to damage: get() raises StoreCorrupt.
MISSING = (1 << 64) - 1
_CHUNK_BYTES = 1 << 20
# A plausible header: length < 2**24 (its top byte is 0) and a known kind byte.
_CANDIDATE = re.compile(rb"(?=[\x00-\xff]{3}\x00[\x00-\xff]{4}[\x01-\x05])")


class Kind(IntEnum):
    """What a record's payload holds."""

    ENTRY = 1
    EVICT = 2
    FORK = 3
    PEER = 4
    RESTART = 5  # an entry that starts its feed afresh, past a gap: what was held is gone


# Kinds whose payload is an entry's full-form bytes.
ENTRY_KINDS = frozenset((Kind.ENTRY, Kind.RESTART))


@dataclass(frozen=True, slots=True)
class Record:
    """A record whose checksum holds, at ``pos`` in its segment."""

    pos: int
    kind: Kind
    payload: bytes

    @property
    def end(self) -> int:
        """Position just after the record."""
        return self.pos + HEADER_BYTES + len(self.payload)


@dataclass(frozen=True, slots=True)
class Damage:
    """Unreadable bytes pos..end; ``end`` is the segment's size when nothing valid follows."""

    pos: int
    end: int
    reason: str
    at_end: bool


def pack_offset(segment: int, pos: int) -> int:
    """64-bit global offset of position ``pos`` in segment number ``segment``."""
    return (segment << _POS_BITS) | pos


def segment_of(offset: int) -> tuple[int, int]:
    """(segment number, position) of a global offset."""
    return offset >> _POS_BITS, offset & _POS_MASK


_KIND_CRC = [zlib.crc32(bytes((k,))) for k in range(256)]  # the kind byte comes first


def _crc(kind: int, payload: bytes) -> int:
    return zlib.crc32(payload, _KIND_CRC[kind])


def encode_record(kind: Kind, payload: bytes) -> bytes:
    """Frame ``payload``: length, checksum, kind."""
    return HEADER.pack(len(payload), _crc(kind, payload), kind) + payload


def encode_evict(feed: FeedId, below: Seq) -> bytes:
    """EVICT payload: entries of ``feed`` below seq ``below`` are gone."""
    return feed + encode_varint(below)


def decode_evict(payload: bytes) -> tuple[FeedId, Seq]:
    """Inverse of encode_evict; DecodeError if malformed."""
    below, end = decode_varint(payload, KEY_BYTES)
    if len(payload) < KEY_BYTES or end != len(payload):
        raise DecodeError("malformed EVICT record")
    return FeedId(payload[:KEY_BYTES]), Seq(below)


def encode_fork(feed: FeedId, seq: Seq, raw: bytes) -> bytes:
    """FORK payload: proof that ``feed`` forked at ``seq``."""
    return feed + encode_varint(seq) + raw


def decode_fork(payload: bytes) -> tuple[FeedId, Seq, bytes]:
    """Inverse of encode_fork; DecodeError if malformed."""
    seq, end = decode_varint(payload, KEY_BYTES)
    if len(payload) < KEY_BYTES:
        raise DecodeError("malformed FORK record")
    return FeedId(payload[:KEY_BYTES]), Seq(seq), payload[end:]


def encode_peer(peer: PeerId, state: bytes) -> bytes:
    """PEER payload: replication memory of ``peer``."""
    return peer + state


def decode_peer(payload: bytes) -> tuple[PeerId, bytes]:
    """Inverse of encode_peer; DecodeError if malformed."""
    if len(payload) < KEY_BYTES:
        raise DecodeError("malformed PEER record")
    return PeerId(payload[:KEY_BYTES]), payload[KEY_BYTES:]


def entry_key(payload: bytes) -> tuple[FeedId, Seq]:
    """(author, seq) of a full-form entry, read without decoding the rest."""
    seq, _ = decode_varint(payload, 1 + KEY_BYTES)
    return FeedId(payload[1 : 1 + KEY_BYTES]), Seq(seq)


def read_record(fd: int, pos: int, payload_bytes: int | None = None) -> tuple[Kind, bytes] | str:
    """The record at ``pos`` if its checksum holds (and its size is as given), else why not."""
    if payload_bytes is None:
        head = os.pread(fd, HEADER_BYTES, pos)
        if len(head) < HEADER_BYTES:
            return "record header cut short"
        payload_bytes = min(HEADER.unpack(head)[0], MAX_PAYLOAD_BYTES)
    buf = os.pread(fd, HEADER_BYTES + payload_bytes, pos)
    if len(buf) < HEADER_BYTES + payload_bytes:
        return "record cut short"
    length, crc, kind = HEADER.unpack_from(buf)
    payload = buf[HEADER_BYTES:]
    if length != payload_bytes or kind not in Kind._value2member_map_:
        return "record header damaged"
    if crc != _crc(kind, payload):
        return "checksum mismatch"
    return Kind(kind), payload


class _Reader:
    """Sequential reads of one segment through a chunk buffer."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._buf = b""
        self._at = 0

    def read(self, pos: int, n: int) -> bytes:
        rel = pos - self._at
        if rel < 0 or rel + n > len(self._buf):
            self._buf = os.pread(self.fd, max(n, _CHUNK_BYTES), pos)
            self._at, rel = pos, 0
        return self._buf[rel : rel + n]

    def record_at(self, pos: int) -> Record | str:
        """The valid record at ``pos``, or why there is none."""
        if pos + HEADER_BYTES > self.size:
            return "record header cut short"
        length, crc, kind = HEADER.unpack(self.read(pos, HEADER_BYTES))
        if length > MAX_PAYLOAD_BYTES or kind not in Kind._value2member_map_:
            return "record header damaged"
        if pos + HEADER_BYTES + length > self.size:
            return "record cut short"
        payload = self.read(pos + HEADER_BYTES, length)
        if crc != _crc(kind, payload):
            return "checksum mismatch"
        return Record(pos, Kind(kind), payload)

    def resync(self, pos: int) -> int | None:
        """Start of the first valid record after ``pos``, or None."""
        at = pos + 1
        while at + HEADER_BYTES <= self.size:
            chunk = os.pread(self.fd, _CHUNK_BYTES + HEADER_BYTES, at)
            for match in _CANDIDATE.finditer(chunk):
                if match.start() >= _CHUNK_BYTES:
                    break
                if isinstance(self.record_at(at + match.start()), Record):
                    return at + match.start()
            at += _CHUNK_BYTES
        return None


def scan_segment(fd: int, start: int, size: int) -> Iterator[Record | Damage]:
    """Every record of a segment from ``start``; damaged stretches come out as Damage."""
    reader = _Reader(fd, size)
    pos = start
    while pos < size:
        found = reader.record_at(pos)
        if isinstance(found, Record):
            yield found
            pos = found.end
            continue
        after = reader.resync(pos)
        yield Damage(pos, size if after is None else after, found, after is None)
        if after is None:
            return
        pos = after

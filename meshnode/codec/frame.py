"""Session frames of the replication protocol (PROTOCOL_VERSION 1).

Every frame is ``type (1 byte, FrameType) || body``; a frame is one datagram of the link
(stream links add their own framing). Integers are varints (codec/varint.py).

A *feed reference* names a feed with a small per-peer index instead of its 32-byte key:
``ref = index << 1 | table``, where table 0 is the sender's table and 1 the receiver's.
Each side assigns indexes in its own table with DEFINE (by 4-byte tag) or DEFINE_KEY.

HELLO (0x01)::

    version     varint   PROTOCOL_VERSION
    epoch       8 bytes  sender's store epoch (random, new when the store is wiped)
    seen_epoch  8 bytes  the receiver's epoch as the sender remembers it (zeros: none)
    flags       1 byte   bit 0: sender has received the receiver's HELLO this session
                         bit 1: sender has not heard that its HELLO arrived: answer it
                         (lossy links only)
    received    varint   entries the sender has received from the receiver, ever (with
                         this epoch pair): lets the receiver trust what it pushed
    sessions    varint   sessions the sender remembers with the receiver; unequal counts
                         mean one side lost memory it never saved (a crash): start afresh

DEFINE (0x02): assigns consecutive indexes from ``start`` to feeds named by tags::

    start       varint   index of the first tag
    tags        varints  strictly increasing 32-bit tags; the first as is, then deltas

    A tag is the first 4 bytes of blake2b(feed key, key = sender epoch || receiver id):
    the receiver matches it against the feeds it knows (it only replicates feeds whose
    keys it already holds). Sorting lets 3,000 tags fit in about 10 KB.

DEFINE_KEY (0x03): repeated ``index varint || feed key 32 bytes`` (for tag collisions).

NOTES (0x04): repeated notes, each ``ref varint || note`` (note layout in clocks.py).

RUN (0x05): notes for consecutive indexes of the sender's table, without refs::

    start       varint   index of the first note
    notes       ...      one note per index

ENTRY (0x06)::

    ref         varint   0: a full-form entry follows; else feed ref + 1 and then seq
    seq         varint   present only with a ref
    entry       rest     full form (ref 0) or short form (codec/message.py)

WANT_KEY (0x07): repeated ``index varint`` of the receiver's table: "define these by key".

Indexes are below 2**32 and seqs and counts below 2**53; larger values are DecodeError.

Budget: a note on a reconnect is 2-4 bytes (ref and latest seq usually under 64).
Any layout change bumps PROTOCOL_VERSION and the vectors in tests/vectors/.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError

__all__ = [
    "EPOCH_BYTES",
    "MAX_INDEX",
    "PROTOCOL_VERSION",
    "FrameType",
    "Hello",
    "decode_define",
    "decode_define_key",
    "decode_entry_frame",
    "decode_hello",
    "decode_indexes",
    "encode_define",
    "encode_define_key",
    "encode_entry_frame",
    "encode_hello",
    "encode_indexes",
    "make_ref",
    "split_ref",
]

PROTOCOL_VERSION = 1
EPOCH_BYTES = 8
MAX_INDEX = (1 << 32) - 1  # table indexes; larger ones are a peer's error, not a feed
_MAX_COUNT = 1 << 53  # entry counts and seqs: derived values must still fit 64 bits
_TAG_LIMIT = 1 << 32


class FrameType(IntEnum):
    """First byte of every frame."""

    HELLO = 1
    DEFINE = 2
    DEFINE_KEY = 3
    NOTES = 4
    RUN = 5
    ENTRY = 6
    WANT_KEY = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Opening frame of a session."""

    version: int
    epoch: bytes
    seen_epoch: bytes
    got_yours: bool
    received: int
    ack_wanted: bool = False
    sessions: int = 0


def make_ref(index: int, theirs: bool) -> int:
    """Feed reference from an index and which table it lives in."""
    return index << 1 | int(theirs)


def split_ref(ref: int) -> tuple[int, bool]:
    """(index, True when the index is in the receiver's table) of a reference."""
    return ref >> 1, bool(ref & 1)


def encode_hello(hello: Hello) -> bytes:
    """Encode HELLO."""
    return (
        bytes((FrameType.HELLO,))
        + encode_varint(hello.version)
        + hello.epoch
        + hello.seen_epoch
        + bytes((int(hello.got_yours) | int(hello.ack_wanted) << 1,))
        + encode_varint(hello.received)
        + encode_varint(hello.sessions)
    )


def decode_hello(frame: bytes) -> Hello:
    """Decode HELLO.

    Raises:
        DecodeError: malformed.
    """
    version, pos = decode_varint(frame, 1)
    end = pos + 2 * EPOCH_BYTES
    if len(frame) < end + 2:
        raise DecodeError("HELLO is too short")
    flags = frame[end]
    if flags > 3:
        raise DecodeError("HELLO has unknown flags")
    received, counted = decode_varint(frame, end + 1)
    sessions, after = decode_varint(frame, counted)
    if after != len(frame):
        raise DecodeError("HELLO has trailing bytes")
    if received >= _MAX_COUNT or sessions >= _MAX_COUNT:
        raise DecodeError("HELLO counts are implausible")
    return Hello(
        version=version,
        epoch=frame[pos : pos + EPOCH_BYTES],
        seen_epoch=frame[pos + EPOCH_BYTES : end],
        got_yours=bool(flags & 1),
        ack_wanted=bool(flags & 2),
        sessions=sessions,
        received=received,
    )


def encode_define(start: int, tags: list[int]) -> bytes:
    """Encode DEFINE; ``tags`` must be strictly increasing 32-bit values."""
    out = [bytes((FrameType.DEFINE,)), encode_varint(start)]
    previous = -1
    for tag in tags:
        if not previous < tag < _TAG_LIMIT:
            raise ValueError("DEFINE tags must be strictly increasing 32-bit values")
        out.append(encode_varint(tag if previous < 0 else tag - previous - 1))
        previous = tag
    return b"".join(out)


def decode_define(frame: bytes) -> tuple[int, list[int]]:
    """Decode DEFINE into (start, tags).

    Raises:
        DecodeError: malformed or a tag out of range.
    """
    start, pos = decode_varint(frame, 1)
    tags: list[int] = []
    previous = -1
    while pos < len(frame):
        delta, pos = decode_varint(frame, pos)
        tag = delta if previous < 0 else previous + 1 + delta
        if tag >= _TAG_LIMIT:
            raise DecodeError("DEFINE tag exceeds 32 bits")
        tags.append(tag)
        previous = tag
    if start + len(tags) > MAX_INDEX:
        raise DecodeError("DEFINE indexes exceed 32 bits")
    return start, tags


def encode_define_key(pairs: list[tuple[int, bytes]]) -> bytes:
    """Encode DEFINE_KEY from (index, 32-byte key) pairs."""
    return bytes((FrameType.DEFINE_KEY,)) + b"".join(encode_varint(i) + k for i, k in pairs)


def decode_define_key(frame: bytes) -> list[tuple[int, bytes]]:
    """Decode DEFINE_KEY.

    Raises:
        DecodeError: malformed.
    """
    pairs = []
    pos = 1
    while pos < len(frame):
        index, pos = decode_varint(frame, pos)
        if index > MAX_INDEX:
            raise DecodeError("DEFINE_KEY index exceeds 32 bits")
        if pos + 32 > len(frame):
            raise DecodeError("DEFINE_KEY truncated")
        pairs.append((index, frame[pos : pos + 32]))
        pos += 32
    return pairs


def encode_indexes(kind: FrameType, indexes: list[int]) -> bytes:
    """Encode a frame that is a list of indexes (WANT_KEY)."""
    return bytes((kind,)) + b"".join(encode_varint(i) for i in indexes)


def decode_indexes(frame: bytes) -> list[int]:
    """Decode a list-of-indexes frame.

    Raises:
        DecodeError: malformed.
    """
    out = []
    pos = 1
    while pos < len(frame):
        index, pos = decode_varint(frame, pos)
        if index > MAX_INDEX:
            raise DecodeError("index exceeds 32 bits")
        out.append(index)
    return out


def encode_entry_frame(ref: int | None, seq: int, entry: bytes) -> bytes:
    """Encode ENTRY: full form when ``ref`` is None, else short form for (ref, seq)."""
    if ref is None:
        return bytes((FrameType.ENTRY, 0)) + entry
    return bytes((FrameType.ENTRY,)) + encode_varint(ref + 1) + encode_varint(seq) + entry


def decode_entry_frame(frame: bytes) -> tuple[int | None, int, bytes]:
    """Decode ENTRY into (ref or None, seq or 0, entry bytes).

    Raises:
        DecodeError: malformed.
    """
    ref, pos = decode_varint(frame, 1)
    if ref == 0:
        return None, 0, frame[pos:]
    seq, pos = decode_varint(frame, pos)
    if not 1 <= seq < _MAX_COUNT or ref - 1 > 2 * MAX_INDEX + 1:
        raise DecodeError("ENTRY seq or feed reference out of range")
    return ref - 1, seq, frame[pos:]

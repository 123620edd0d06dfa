"""Notes (one feed's entry in a vector clock), feed tags, and the per-peer memory codec.

Note layout (inside NOTES and RUN frames, codec/frame.py)::

    value   varint   latest << 3 | flags
                     latest: highest seq held (0: none)
                     bit 0: lazy (1: just tell me what you have; 0: push new entries to me)
                     bit 1: a ``first`` varint follows (the range held starts there, not at 1)
                     bit 2: a ``start`` varint follows (push from there, not from latest + 1;
                            0 means "I do not replicate this feed")
    first   varint   optional
    start   varint   optional

A node holding seq a..b of a feed says so with first = a, latest = b; a capped node asks
for the tail it keeps with ``start``; so nobody waits for entries nobody can serve.

Peer memory (kept in the store between sessions, for request skipping)::

    version 1 byte (1) | peer epoch 8 bytes
    count varint | count x key 32 bytes                      our table, index order
    count varint | count x (index varint | key 32 bytes)     their table
    count varint | count x (key 32 bytes | note)             their clock, as they told us
    count varint | count x (key 32 bytes | varint)           our notes as they know them,
                                                             latest << 1 | lazy, plus 1
                                                             (0: "not replicated")
    count varint | count x (key 32 bytes | varint)           highest seq pushed, plus 1
    received varint | pushed varint                          entry counts both ways
    count varint | count x (index varint | tag varint)       their tags we could not match
    sessions varint                                          sessions held with this peer
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.types import FeedId

__all__ = [
    "NOT_REPLICATING",
    "Note",
    "PeerMemory",
    "decode_note",
    "decode_peer_memory",
    "encode_note",
    "encode_peer_memory",
    "feed_tag",
]

_LAZY, _FIRST, _START = 1, 2, 4
_MAX_SEQ = (1 << 53) - 1
_MEMORY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Note:
    """One feed's state as a node states it to a peer."""

    latest: int
    lazy: bool
    first: int = 0  # 0: the range starts at 1 (or nothing is held)
    start: int = -1  # first seq to push: -1 from latest + 1; 0 not replicated

    @property
    def replicating(self) -> bool:
        """False when the sender does not replicate the feed at all."""
        return self.start != 0

    @property
    def push_from(self) -> int:
        """First seq the sender asks to be pushed."""
        return self.latest + 1 if self.start < 0 else self.start


NOT_REPLICATING = Note(0, True, 0, 0)


def encode_note(note: Note) -> bytes:
    """Encode a note."""
    flags = int(note.lazy) | (_FIRST if note.first else 0) | (_START if note.start >= 0 else 0)
    out = encode_varint(note.latest << 3 | flags)
    if note.first:
        out += encode_varint(note.first)
    if note.start >= 0:
        out += encode_varint(note.start)
    return out


def decode_note(buf: bytes, pos: int) -> tuple[Note, int]:
    """Decode the note at ``buf[pos:]``; returns (note, position after it).

    Raises:
        DecodeError: malformed.
    """
    value, pos = decode_varint(buf, pos)
    first = start = 0
    if value & _FIRST:
        first, pos = decode_varint(buf, pos)
        if first == 0:
            raise DecodeError("note: first seq must be >= 1")
    if value & _START:
        start, pos = decode_varint(buf, pos)
    if value >> 3 > _MAX_SEQ or first > _MAX_SEQ or start > _MAX_SEQ:
        raise DecodeError("note: seq out of range (2**53)")
    return Note(value >> 3, bool(value & _LAZY), first, start if value & _START else -1), pos


def feed_tag(feed: bytes, salt: bytes) -> int:
    """32-bit tag of a feed key under a per-peer salt."""
    return int.from_bytes(hashlib.blake2b(feed, digest_size=4, key=salt).digest(), "big")


@dataclass(slots=True)
class PeerMemory:
    """What a node remembers of one peer across sessions."""

    epoch: bytes = b""
    my_table: list[FeedId] = field(default_factory=list)
    their_table: dict[int, FeedId] = field(default_factory=dict)
    remote: dict[FeedId, Note] = field(default_factory=dict)
    sent: dict[FeedId, int] = field(default_factory=dict)
    pushed: dict[FeedId, int] = field(default_factory=dict)
    received: int = 0
    pushed_count: int = 0
    unknown: dict[int, int] = field(default_factory=dict)
    sessions: int = 0


def encode_peer_memory(memory: PeerMemory) -> bytes:
    """Encode a peer memory for the store."""
    out = [bytes((_MEMORY_VERSION,)), memory.epoch.ljust(8, b"\0")[:8]]
    out.append(encode_varint(len(memory.my_table)))
    out.extend(memory.my_table)
    out.append(encode_varint(len(memory.their_table)))
    out.extend(encode_varint(i) + f for i, f in memory.their_table.items())
    out.append(encode_varint(len(memory.remote)))
    out.extend(f + encode_note(n) for f, n in memory.remote.items())
    for table in (memory.sent, memory.pushed):  # values + 1: "sent" may hold -1
        out.append(encode_varint(len(table)))
        out.extend(f + encode_varint(s + 1) for f, s in table.items())
    out.append(encode_varint(memory.received) + encode_varint(memory.pushed_count))
    out.append(encode_varint(len(memory.unknown)))
    out.extend(encode_varint(i) + encode_varint(t) for i, t in memory.unknown.items())
    out.append(encode_varint(memory.sessions))
    return b"".join(out)


def decode_peer_memory(data: bytes) -> PeerMemory:
    """Decode a stored peer memory.

    Raises:
        DecodeError: malformed or another version.
    """
    if len(data) < 9 or data[0] != _MEMORY_VERSION:
        raise DecodeError("peer memory: unknown version")
    memory = PeerMemory(epoch=data[1:9])
    count, pos = decode_varint(data, 9)
    for _ in range(count):
        memory.my_table.append(FeedId(_key(data, pos)))
        pos += 32
    count, pos = decode_varint(data, pos)
    for _ in range(count):
        index, pos = decode_varint(data, pos)
        memory.their_table[index] = FeedId(_key(data, pos))
        pos += 32
    count, pos = decode_varint(data, pos)
    for _ in range(count):
        feed = FeedId(_key(data, pos))
        memory.remote[feed], pos = decode_note(data, pos + 32)
    for table in (memory.sent, memory.pushed):
        count, pos = decode_varint(data, pos)
        for _ in range(count):
            feed = FeedId(_key(data, pos))
            value, pos = decode_varint(data, pos + 32)
            table[feed] = value - 1
    memory.received, pos = decode_varint(data, pos)
    memory.pushed_count, pos = decode_varint(data, pos)
    count, pos = decode_varint(data, pos)
    for _ in range(count):
        index, pos = decode_varint(data, pos)
        memory.unknown[index], pos = decode_varint(data, pos)
    memory.sessions, pos = decode_varint(data, pos)
    if pos != len(data):
        raise DecodeError("peer memory: trailing bytes")
    return memory


def _key(data: bytes, pos: int) -> bytes:
    if pos + 32 > len(data):
        raise DecodeError("peer memory truncated")
    return data[pos : pos + 32]

"""Messages of the shared-channel protocol (radios, where one transmission reaches all).

A channel has no sessions and no per-peer tables: every message is a broadcast that any
listener may use, so feeds are named by a 4-byte tag that needs no agreement first. Each
message (the payload of one reassembled link message, transports/fragment.py) is::

    src     4 bytes   first 4 bytes of the sender's key (its short id)
    type    1 byte    MessageType
    body    ...

BEACON (0x01): ``net (4) || digest (4) [|| varint(held)]``; 13 bytes in all, or 14 to 16
with ``held``. ``net`` is the network tag (identity.network_tag as 4 bytes), ``digest`` a
hash of the sender's clock (clock_digest), so a listener sees at once that a neighbour
holds something new. ``held`` (1..65535, absent when 0) is how many seconds the sender's
airtime budget keeps it from sending entries it has been asked for: listeners need not ask
again before then.

WANT (0x02): repeated ``tag (4) || varint(next << 1 | empty)``: "I want feed tag from seq
next"; ``empty`` says the sender holds nothing of the feed, so the first entry must come
in the full form. 5 + 5 bytes for one feed with next < 64.

HAVE (0x03): repeated ``tag (4) || varint(latest)``: what the sender holds, sent when it got
entries that its neighbours did not overhear (its own posts, or from another link).

ENTRY (0x04): ``tag (4) || varint(seq) || entry``, the entry in the short form (receivers
holding seq-1 rebuild it) or, for a receiver holding nothing, the full form; the entry's
own header byte says which. A 50-byte post in the short form: 5 + 4 + 1 + 122 = 132 bytes.

A tag is ``blake2b(feed key, digest_size=4, key=network key)``: one value per feed for the
whole channel. Collisions are possible (1,000 feeds: about 1 in 10,000 that some two
share a tag); a receiver tries every feed it wants under the tag, and the signature check
tells which one an entry belongs to. Any layout change bumps CHANNEL_VERSION and the
vectors in tests/vectors/channel.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from meshnode.types import FeedId

__all__ = [
    "CHANNEL_VERSION",
    "MAX_HELD_S",
    "SHORT_ID_BYTES",
    "TAG_BYTES",
    "Beacon",
    "ChannelMessage",
    "EntryMessage",
    "Have",
    "MessageType",
    "Want",
    "channel_tag",
    "clock_digest",
    "decode_message",
    "encode_beacon",
    "encode_entry_message",
    "encode_have",
    "encode_want",
]

CHANNEL_VERSION = 2
MAX_HELD_S = 0xFFFF
SHORT_ID_BYTES = 4
TAG_BYTES = 4
_MAX_SEQ = (1 << 53) - 1


class MessageType(IntEnum):
    """Second field of every channel message."""

    BEACON = 1
    WANT = 2
    HAVE = 3
    ENTRY = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Beacon:
    """A neighbour's presence, network and clock digest."""

    src: bytes
    net: bytes
    digest: bytes
    held_s: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Want:
    """Feeds (by tag) the sender wants, each from a seq; empty: it holds none of it."""

    src: bytes
    wants: tuple[tuple[bytes, int, bool], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Have:
    """Feeds (by tag) the sender holds, each up to a seq."""

    src: bytes
    haves: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryMessage:
    """One entry of the feed with ``tag``: short or full form, as its header says."""

    src: bytes
    tag: bytes
    seq: int
    entry: bytes


ChannelMessage = Beacon | Want | Have | EntryMessage


def channel_tag(feed: FeedId, network_key: bytes) -> bytes:
    """The 4-byte name of ``feed`` on every channel of this network."""
    return hashlib.blake2b(feed, digest_size=TAG_BYTES, key=network_key[:64]).digest()


def clock_digest(latest: Mapping[FeedId, int]) -> bytes:
    """4 bytes that change whenever any feed's latest seq does."""
    h = hashlib.blake2b(digest_size=4)
    for feed in sorted(latest):
        h.update(feed + latest[feed].to_bytes(8, "big"))
    return h.digest()


def _head(src: bytes, kind: MessageType) -> bytes:
    if len(src) != SHORT_ID_BYTES:
        raise ValueError(f"a short id is {SHORT_ID_BYTES} bytes")
    return src + bytes((kind,))


def encode_beacon(src: bytes, net: bytes, digest: bytes, held_s: int = 0) -> bytes:
    """BEACON; ``held_s`` above 0 says the sender's budget holds its entries that long."""
    if len(net) != 4 or len(digest) != 4:
        raise ValueError("net and digest are 4 bytes each")
    if not 0 <= held_s <= MAX_HELD_S:
        raise ValueError(f"held_s must be 0..{MAX_HELD_S}, got {held_s}")
    held = encode_varint(held_s) if held_s else b""
    return _head(src, MessageType.BEACON) + net + digest + held


def encode_want(src: bytes, wants: Iterable[tuple[bytes, int, bool]]) -> bytes:
    """WANT of (tag, next seq, holds nothing) triples."""
    body = b"".join(tag + encode_varint(nxt << 1 | int(empty)) for tag, nxt, empty in wants)
    return _head(src, MessageType.WANT) + body


def encode_have(src: bytes, haves: Iterable[tuple[bytes, int]]) -> bytes:
    """HAVE of (tag, latest seq) pairs."""
    body = b"".join(tag + encode_varint(latest) for tag, latest in haves)
    return _head(src, MessageType.HAVE) + body


def encode_entry_message(src: bytes, tag: bytes, seq: int, entry: bytes) -> bytes:
    """ENTRY carrying one short- or full-form entry."""
    return _head(src, MessageType.ENTRY) + tag + encode_varint(seq) + entry


def _seq(value: int) -> int:
    if value > _MAX_SEQ:
        raise DecodeError(f"seq {value} is beyond 2**53-1")
    return value


def _pairs(body: bytes) -> list[tuple[bytes, int]]:
    out = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < TAG_BYTES + 1:
            raise DecodeError("truncated tag and seq")
        tag = body[pos : pos + TAG_BYTES]
        value, pos = decode_varint(body, pos + TAG_BYTES)
        out.append((tag, value))
    return out


def _beacon(src: bytes, body: bytes) -> Beacon:
    if len(body) == 8:
        return Beacon(src=src, net=body[:4], digest=body[4:])
    if not 9 <= len(body) <= 11:
        raise DecodeError(f"BEACON body of {len(body)} bytes, expected 8 to 11")
    held, end = decode_varint(body, 8)
    if end != len(body) or not 1 <= held <= MAX_HELD_S:
        raise DecodeError("BEACON with a bad held field")
    return Beacon(src=src, net=body[:4], digest=body[4:8], held_s=held)


def decode_message(message: bytes) -> ChannelMessage:
    """Decode one channel message.

    Raises:
        DecodeError: malformed input.
    """
    if len(message) < SHORT_ID_BYTES + 1:
        raise DecodeError(f"channel message of {len(message)} bytes is too short")
    src, body = message[:SHORT_ID_BYTES], message[SHORT_ID_BYTES + 1 :]
    try:
        kind = MessageType(message[SHORT_ID_BYTES])
    except ValueError:
        raise DecodeError(f"unknown channel message type {message[SHORT_ID_BYTES]}") from None
    if kind is MessageType.BEACON:
        return _beacon(src, body)
    if kind is MessageType.WANT:
        wants = tuple((t, _seq(v >> 1), bool(v & 1)) for t, v in _pairs(body))
        if not wants or any(nxt < 1 for _, nxt, _ in wants):
            raise DecodeError("WANT names no feed, or a seq below 1")
        return Want(src=src, wants=wants)
    if kind is MessageType.HAVE:
        haves = tuple((t, _seq(v)) for t, v in _pairs(body))
        if not haves:
            raise DecodeError("HAVE names no feed")
        return Have(src=src, haves=haves)
    if len(body) < TAG_BYTES + 2:
        raise DecodeError("truncated ENTRY")
    seq, pos = decode_varint(body, TAG_BYTES)
    if not 1 <= seq <= _MAX_SEQ or pos >= len(body):
        raise DecodeError("ENTRY with a bad seq or no entry")
    return EntryMessage(src=src, tag=body[:TAG_BYTES], seq=seq, entry=body[pos:])

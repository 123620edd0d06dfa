"""Reading private messages on a node: keys published, messages opened, conversations.

Everything here reads the store and opens payloads with keys passed in; nothing is kept.
A node finds its messages by trying to open every PRIVATE entry it holds (its own and
others'): a recipient cannot be read from an entry, so there is nothing faster to look up,
and it is also why fetching them all tells a box nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.content import (
    EncKey,
    decode_enckey,
    decode_private_inner,
    decode_reply,
    recipient_tag,
)
from meshnode.codec.message import ContentType, decode_entry
from meshnode.codec.varint import decode_varint
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.secure.identity import KEY_BYTES
from meshnode.secure.private import EncKeypair, enc_keypair, open_private
from meshnode.types import FeedId, MsgId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.secure.identity import Identity

__all__ = [
    "ENCKEY_LOOK_BACK",
    "Message",
    "entry_content_type",
    "feeds_by_tag",
    "is_private",
    "key_fingerprint",
    "latest_enckey",
    "my_keypairs",
    "private_messages",
    "reached_homes",
]

# Entries of a feed searched, newest first, for its latest ENCKEY: a person publishes it
# once, near the start, so a long feed's key can be far back; a bound keeps one look-up
# within a second on a Pi even for a feed of this many entries.
ENCKEY_LOOK_BACK = 20_000
_PLAIN_LIMIT = 1 << 16
_SHORT_FORM = 0x02  # the header bit of an entry's short form (codec/message.py)


def entry_content_type(raw: bytes) -> int:
    """Content type of a full-form entry, read without hashing or decompressing it.

    Raises:
        DecodeError: too short or malformed up to the content type.
    """
    if len(raw) < 1 + KEY_BYTES + 1 or raw[0] & _SHORT_FORM:
        raise DecodeError("not a full-form entry")
    seq, pos = decode_varint(raw, 1 + KEY_BYTES)
    if seq > 1:
        pos += KEY_BYTES
    _, pos = decode_varint(raw, pos)  # timestamp
    content_type, _ = decode_varint(raw, pos)
    return content_type


def is_private(raw: bytes) -> bool:
    """True for a full-form PRIVATE entry (False for anything that does not parse)."""
    try:
        return entry_content_type(raw) == ContentType.PRIVATE
    except DecodeError:
        return False


def key_fingerprint(key: bytes) -> str:
    """A short form of an encryption key to compare by eye: 16 hex digits in groups of 4."""
    digest = hashlib.blake2b(key, digest_size=8).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


def latest_enckey(node: Node, feed: FeedId) -> tuple[Seq, EncKey] | None:
    """The newest valid ENCKEY held of ``feed`` (within ENCKEY_LOOK_BACK entries), with its seq."""
    head = node.store.head(feed)
    if head is None:
        return None
    stop = max(head.first, head.latest - ENCKEY_LOOK_BACK + 1)
    for seq in range(head.latest, stop - 1, -1):
        try:
            raw = node.store.get(feed, Seq(seq))
            if entry_content_type(raw) != ContentType.ENCKEY:
                continue
            entry = decode_entry(raw, max_content_bytes=_PLAIN_LIMIT)
            return Seq(seq), decode_enckey(entry.plain_content(_PLAIN_LIMIT))
        except (DecodeError, StoreCorrupt, KeyError):
            continue  # a damaged or evicted entry says nothing about a key
    return None


def my_keypairs(node: Node, identity: Identity) -> list[EncKeypair]:
    """Our keypairs, the published generation first, then every older one."""
    found = latest_enckey(node, identity.feed_id)
    generation = found[1].generation if found is not None else 0
    return [enc_keypair(identity.seed, g) for g in range(generation, -1, -1)]


def feeds_by_tag(feeds: Iterable[FeedId]) -> dict[bytes, list[FeedId]]:
    """Recipient tag -> the feeds it may name (usually one)."""
    out: dict[bytes, list[FeedId]] = {}
    for feed in feeds:
        out.setdefault(recipient_tag(feed), []).append(feed)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One private message this node's key opened."""

    id: MsgId
    author: FeedId
    seq: Seq
    timestamp_ms: int
    recipient_tags: tuple[bytes, ...]
    text: str
    parent: MsgId | None
    sent: bool  # opened as its author (our own message)


def private_messages(
    node: Node, keypairs: list[EncKeypair], *, every: int = 0
) -> Iterator[Message | int]:
    """Every PRIVATE entry held that one of ``keypairs`` opens, feed by feed; with
    ``every``, also the count of entries looked at so far after each ``every`` of them
    (so that a caller can let other work run during a long scan)."""
    looked = 0
    for feed, (first, latest) in sorted(node.store.ranges().items()):
        for seq in range(first, latest + 1):
            looked += 1
            if every and looked % every == 0:
                yield looked
            try:
                raw = node.store.get(feed, Seq(seq))
                if not is_private(raw):
                    continue
                entry = decode_entry(raw, max_content_bytes=_PLAIN_LIMIT)
                message = _open(entry, keypairs)
            except (DecodeError, StoreCorrupt, KeyError):
                continue  # damaged, evicted meanwhile, or not for us
            if message is not None:
                yield message


def _open(entry: Entry, keypairs: list[EncKeypair]) -> Message | None:
    payload = entry.plain_content(_PLAIN_LIMIT)
    for keypair in keypairs:
        try:
            inner_bytes, as_author = open_private(payload, keypair.secret_key)
        except DecodeError:
            continue
        inner = decode_private_inner(inner_bytes)
        text, parent = inner.payload.decode("utf-8"), None
        if inner.content_type == ContentType.REPLY:
            reply = decode_reply(inner.payload)
            text, parent = reply.text, reply.parent
        return Message(
            id=entry.id,
            author=entry.author,
            seq=entry.seq,
            timestamp_ms=entry.timestamp_ms,
            recipient_tags=inner.recipient_tags,
            text=text,
            parent=parent,
            sent=as_author,
        )
    return None


def reached_homes(seq: int, homes: Iterable[FeedId], reach: Mapping[FeedId, int]) -> list[FeedId]:
    """The homes known to hold entry ``seq`` of the feed ``reach`` was taken for."""
    return [home for home in homes if reach.get(home, 0) >= seq]

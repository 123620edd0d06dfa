"""Content payloads with a meaning the node itself acts on.

POST: UTF-8 text, no framing.

REPLY (32 + n bytes): a post in a thread::

    parent 32 bytes  id of the entry it answers (a post or another reply)
    text    n bytes  UTF-8, no framing

A thread is found by walking parents up to a post; the root is not repeated in every
reply, so a reply with 50 bytes of text is 32 bytes longer than a post and still fits one
LoRa frame (short form: 1 + 6 + 1 + 82 + 64 = 154 bytes).

ABOUT (2..1+64+1024 bytes): what a person says about themselves::

    name_len    1 byte    n, 1..64
    name        n bytes   UTF-8: the name people see
    description m bytes   UTF-8, 0..1024: everything after the name

The latest ABOUT entry of a feed (highest seq) is its owner's current name.

CONTACT (3..33 bytes)::

    action  1 byte   ContactAction: 1 follow, 2 unfollow, 3 block, 4 unblock
    target 32 bytes  feed id the action is about

The latest contact entry (highest seq) from an author about a target wins.

ENCKEY (33..133 bytes): a feed's X25519 encryption public key, for private messages::

    key        32 bytes       X25519 public key, not a low-order point
    generation varint         0..2**32-1: which key derived from the seed (secure/private.py)
    homes      32 bytes x h   h = 0..3 distinct feed ids of the boxes that keep this
                              person's private messages (their mailboxes)

The latest ENCKEY entry of a feed (highest seq) is its current key; a new generation
replaces the old one when a person resets their key.

PRIVATE (32 + 49 n + 16 + m bytes, n = 1..7): an ephemeral key, n slots and the sealed
inner; the layout and its security argument are in secure/private.py. The inner, once
opened::

    content_type 1 byte      POST or REPLY: what the payload is
    count        1 byte      n, 1..7: the recipients, so everyone who reads sees them all
    tags         8 bytes x n the first 8 bytes of each recipient's feed id
    payload      m bytes     a POST or REPLY payload, as above

The author is the entry's author and is not tagged. A one-recipient message with 50
bytes of text is 32 + 49 + 16 + (1 + 1 + 8 + 50) = 157 bytes of content, and its entry's
short form 1 + 6 + 1 + 157 + 64 = 229 bytes, within one LoRa frame at the default radio
settings (239 bytes for an entry; a public 50-byte post is 122).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from meshnode.codec.message import ContentType
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import KEY_BYTES
from meshnode.secure.private import (
    ENC_KEY_BYTES,
    MAX_GENERATION,
    MAX_RECIPIENTS,
    is_usable_enc_key,
)
from meshnode.types import FeedId, MsgId

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_HOMES",
    "MAX_NAME_BYTES",
    "RECIPIENT_TAG_BYTES",
    "About",
    "Contact",
    "ContactAction",
    "EncKey",
    "PrivateInner",
    "Reply",
    "decode_about",
    "decode_contact",
    "decode_enckey",
    "decode_post",
    "decode_private_inner",
    "decode_reply",
    "encode_about",
    "encode_contact",
    "encode_enckey",
    "encode_private_inner",
    "encode_reply",
    "recipient_tag",
]

_CONTACT_BYTES = 1 + KEY_BYTES
MAX_NAME_BYTES = 64
MAX_DESCRIPTION_BYTES = 1024
MAX_HOMES = 3
RECIPIENT_TAG_BYTES = 8
_INNER_TYPES = (ContentType.POST, ContentType.REPLY)


class ContactAction(IntEnum):
    """What a contact entry says about its target."""

    FOLLOW = 1
    UNFOLLOW = 2
    BLOCK = 3
    UNBLOCK = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """One author's statement about another feed."""

    action: ContactAction
    target: FeedId


def encode_contact(contact: Contact) -> bytes:
    """Encode a CONTACT payload."""
    return bytes((contact.action,)) + contact.target


def decode_contact(data: bytes) -> Contact:
    """Decode a CONTACT payload.

    Raises:
        DecodeError: wrong length or unknown action.
    """
    if len(data) != _CONTACT_BYTES:
        raise DecodeError(f"contact content must be {_CONTACT_BYTES} bytes, got {len(data)}")
    try:
        action = ContactAction(data[0])
    except ValueError:
        raise DecodeError(f"unknown contact action {data[0]}") from None
    return Contact(action=action, target=FeedId(data[1:]))


def decode_post(data: bytes) -> str:
    """Decode a POST payload; DecodeError unless valid UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("post is not valid UTF-8") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A post that answers another entry."""

    parent: MsgId
    text: str


def encode_reply(reply: Reply) -> bytes:
    """Encode a REPLY payload."""
    if len(reply.parent) != KEY_BYTES:
        raise ValueError("a reply's parent is a 32-byte entry id")
    return reply.parent + reply.text.encode("utf-8")


def decode_reply(data: bytes) -> Reply:
    """Decode a REPLY payload; DecodeError when too short or not UTF-8."""
    if len(data) < KEY_BYTES:
        raise DecodeError(f"reply content must start with a {KEY_BYTES}-byte parent id")
    return Reply(parent=MsgId(data[:KEY_BYTES]), text=decode_post(data[KEY_BYTES:]))


@dataclass(frozen=True, slots=True, kw_only=True)
class About:
    """A person's name and description of themselves."""

    name: str
    description: str = ""


def encode_about(about: About) -> bytes:
    """Encode an ABOUT payload; ValueError when the name or description is out of bounds."""
    name, description = about.name.encode("utf-8"), about.description.encode("utf-8")
    if not 1 <= len(name) <= MAX_NAME_BYTES or not about.name.strip():
        raise ValueError(f"a name is 1 to {MAX_NAME_BYTES} bytes of UTF-8, not blank")
    if len(description) > MAX_DESCRIPTION_BYTES:
        raise ValueError(f"a description is at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8")
    return bytes((len(name),)) + name + description


def decode_about(data: bytes) -> About:
    """Decode an ABOUT payload; DecodeError when its lengths or text are not valid."""
    if not data or not 1 <= data[0] <= MAX_NAME_BYTES or len(data) < 1 + data[0]:
        raise DecodeError(f"about content must start with a name of 1 to {MAX_NAME_BYTES} bytes")
    end = 1 + data[0]
    if len(data) - end > MAX_DESCRIPTION_BYTES:
        raise DecodeError(f"about description is over {MAX_DESCRIPTION_BYTES} bytes")
    return About(name=decode_post(data[1:end]), description=decode_post(data[end:]))


@dataclass(frozen=True, slots=True, kw_only=True)
class EncKey:
    """A feed's published encryption key, and the boxes that keep its private messages."""

    key: bytes
    generation: int = 0
    homes: tuple[FeedId, ...] = ()


def encode_enckey(enckey: EncKey) -> bytes:
    """Encode an ENCKEY payload; ValueError when a field is out of bounds."""
    if not is_usable_enc_key(enckey.key):
        raise ValueError("an encryption key is a 32-byte X25519 key, not a low-order point")
    if not 0 <= enckey.generation <= MAX_GENERATION:
        raise ValueError(f"an encryption key generation is 0..{MAX_GENERATION}")
    homes = enckey.homes
    if len(homes) > MAX_HOMES or len(set(homes)) != len(homes):
        raise ValueError(f"an encryption key names 0 to {MAX_HOMES} distinct homes")
    if any(len(home) != KEY_BYTES for home in homes):
        raise ValueError("a home is a 32-byte feed id")
    return enckey.key + encode_varint(enckey.generation) + b"".join(homes)


def decode_enckey(data: bytes) -> EncKey:
    """Decode an ENCKEY payload; DecodeError when malformed or the key is unusable."""
    key = data[:ENC_KEY_BYTES]
    if not is_usable_enc_key(key):
        raise DecodeError("enckey content must start with a usable 32-byte X25519 key")
    generation, end = decode_varint(data, ENC_KEY_BYTES)
    if generation > MAX_GENERATION:
        raise DecodeError(f"enckey generation {generation} is over {MAX_GENERATION}")
    rest = data[end:]
    if len(rest) % KEY_BYTES or len(rest) > MAX_HOMES * KEY_BYTES:
        raise DecodeError(f"enckey homes must be 0 to {MAX_HOMES} feed ids, got {len(rest)} bytes")
    homes = tuple(FeedId(rest[i : i + KEY_BYTES]) for i in range(0, len(rest), KEY_BYTES))
    if len(set(homes)) != len(homes):
        raise DecodeError("enckey names a home twice")
    return EncKey(key=key, generation=generation, homes=homes)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateInner:
    """What a PRIVATE payload holds once opened: a post or reply and who it is for."""

    content_type: ContentType
    recipient_tags: tuple[bytes, ...]
    payload: bytes


def recipient_tag(feed: FeedId) -> bytes:
    """The 8-byte tag that names a recipient inside a private message."""
    return feed[:RECIPIENT_TAG_BYTES]


def encode_private_inner(inner: PrivateInner) -> bytes:
    """Encode the inner of a PRIVATE payload; ValueError when a field is out of bounds."""
    if inner.content_type not in _INNER_TYPES:
        raise ValueError("a private message holds a POST or a REPLY")
    tags = inner.recipient_tags
    if not 1 <= len(tags) <= MAX_RECIPIENTS or any(len(t) != RECIPIENT_TAG_BYTES for t in tags):
        raise ValueError(f"a private message names 1 to {MAX_RECIPIENTS} 8-byte recipient tags")
    return bytes((inner.content_type, len(tags))) + b"".join(tags) + inner.payload


def decode_private_inner(data: bytes) -> PrivateInner:
    """Decode an opened PRIVATE inner, its payload checked for its type; DecodeError if not."""
    if len(data) < 2 or data[0] not in _INNER_TYPES or not 1 <= data[1] <= MAX_RECIPIENTS:
        raise DecodeError(
            f"private inner must start with POST or REPLY and 1 to {MAX_RECIPIENTS} recipients"
        )
    end = 2 + RECIPIENT_TAG_BYTES * data[1]
    if len(data) < end:
        raise DecodeError("private inner is shorter than its recipient tags")
    content_type, payload = ContentType(data[0]), data[end:]
    if content_type == ContentType.POST:
        decode_post(payload)
    else:
        decode_reply(payload)
    tags = tuple(data[i : i + RECIPIENT_TAG_BYTES] for i in range(2, end, RECIPIENT_TAG_BYTES))
    return PrivateInner(content_type=content_type, recipient_tags=tags, payload=payload)

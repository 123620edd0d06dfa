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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from meshnode.errors import DecodeError
from meshnode.secure.identity import KEY_BYTES
from meshnode.types import FeedId, MsgId

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_NAME_BYTES",
    "About",
    "Contact",
    "ContactAction",
    "Reply",
    "decode_about",
    "decode_contact",
    "decode_post",
    "decode_reply",
    "encode_about",
    "encode_contact",
    "encode_reply",
]

_CONTACT_BYTES = 1 + KEY_BYTES
MAX_NAME_BYTES = 64
MAX_DESCRIPTION_BYTES = 1024


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

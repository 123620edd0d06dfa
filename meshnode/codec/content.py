"""Content payloads with a meaning the node itself acts on.

POST: UTF-8 text, no framing.

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
from meshnode.types import FeedId

__all__ = ["Contact", "ContactAction", "decode_contact", "decode_post", "encode_contact"]

_CONTACT_BYTES = 1 + KEY_BYTES


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

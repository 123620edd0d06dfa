"""JSON-ready views of entries, shared by the CLI, the control socket and the page."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from meshnode.codec.content import decode_about, decode_contact, decode_reply
from meshnode.codec.message import ContentType, decode_entry
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.secure.identity import format_feed_id, format_msg_id
from meshnode.types import Seq

if TYPE_CHECKING:
    from meshnode.codec.content import About
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.types import FeedId

__all__ = ["ABOUT_LOOK_BACK", "entry_json", "latest_about"]

# Entries from others were checked against their sender's limit, which may exceed ours.
_PLAIN_LIMIT = 1 << 16
ABOUT_LOOK_BACK = 64  # entries of a feed searched, newest first, for its owner's name


def _type_name(content_type: int) -> str | int:
    try:
        return ContentType(content_type).name.lower()
    except ValueError:
        return content_type


def entry_json(entry: Entry) -> dict[str, object]:
    """JSON form of an entry: text for posts, contact for contacts, content_b64 otherwise."""
    out: dict[str, object] = {
        "author": format_feed_id(entry.author),
        "seq": entry.seq,
        "id": format_msg_id(entry.id),
        "timestamp": entry.timestamp_ms,
        "type": _type_name(entry.content_type),
    }
    try:
        plain = entry.plain_content(_PLAIN_LIMIT)
        if entry.content_type == ContentType.POST:
            out["text"] = plain.decode("utf-8")
            return out
        if entry.content_type == ContentType.CONTACT:
            parsed = decode_contact(plain)
            target = format_feed_id(parsed.target)
            out["contact"] = {"action": parsed.action.name.lower(), "target": target}
            return out
        if entry.content_type == ContentType.REPLY:
            reply = decode_reply(plain)
            out.update(text=reply.text, parent=format_msg_id(reply.parent))
            return out
        if entry.content_type == ContentType.ABOUT:
            about = decode_about(plain)
            out["about"] = {"name": about.name, "description": about.description}
            return out
    except (DecodeError, UnicodeDecodeError):
        plain = entry.content
    out["content_b64"] = base64.b64encode(plain).decode("ascii")
    return out


def latest_about(node: Node, feed: FeedId) -> About | None:
    """The newest ABOUT among the last ABOUT_LOOK_BACK entries held of ``feed``, if any."""
    head = node.store.head(feed)
    if head is None:
        return None
    for seq in range(head.latest, max(head.first, head.latest - ABOUT_LOOK_BACK + 1) - 1, -1):
        try:
            entry = decode_entry(node.store.get(feed, Seq(seq)), max_content_bytes=_PLAIN_LIMIT)
            if entry.content_type == ContentType.ABOUT:
                return decode_about(entry.plain_content(_PLAIN_LIMIT))
        except (DecodeError, StoreCorrupt, KeyError):
            continue  # a damaged or evicted entry says nothing about a name
    return None

"""What the CLI asks of a node, as requests with JSON arguments and JSON results.

One table serves both ways in: the CLI calls it on a node it opened itself, and the
daemon's control socket (control.py) calls it on the node the daemon owns. Arguments come
from outside, so every handler checks their types and raises RequestError naming the bad
one; a handler never returns non-JSON values.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from meshnode.codec.content import About, Contact, ContactAction, Reply, encode_about, encode_reply
from meshnode.codec.message import ContentType
from meshnode.core.timeline import decode_cursor, encode_cursor, timeline_page
from meshnode.core.views import entry_json
from meshnode.errors import DecodeError, ForkError, MeshnodeError, StoreCorrupt
from meshnode.secure.identity import format_feed_id, format_msg_id, parse_feed_id, parse_msg_id
from meshnode.usb.merge import SyncReport, sync_drive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.host.jobs import Job
    from meshnode.types import FeedId

__all__ = [
    "HANDLERS",
    "MAX_POSTS_PER_REQUEST",
    "STREAMS",
    "PostError",
    "RequestError",
    "Stream",
    "entry_json",
    "entry_ref",
]

_FLUSH_EVERY = 1000
# post_many runs on the daemon's event loop: a bigger batch would stall its links.
MAX_POSTS_PER_REQUEST = 1000


class RequestError(MeshnodeError):
    """A request named an unknown command or carried a bad argument."""


class PostError(MeshnodeError):
    """A post could not be made (too long, or our own feed is unusable)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _arg_str(args: Mapping[str, object], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise RequestError(f"argument {name!r} must be a string")
    return value


def _arg_int(args: Mapping[str, object], name: str, default: int | None) -> int | None:
    value = args.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RequestError(f"argument {name!r} must be an integer >= 0")
    return value


def _arg_feed(args: Mapping[str, object], name: str) -> FeedId:
    try:
        return parse_feed_id(_arg_str(args, name))
    except DecodeError as exc:
        raise RequestError(f"argument {name!r}: {exc}") from None


def entry_ref(entry: Entry) -> dict[str, object]:
    """Id, author and seq of an entry."""
    return {"id": format_msg_id(entry.id), "author": format_feed_id(entry.author), "seq": entry.seq}


def _post(node: Node, text: str) -> Entry:
    if not text.strip():
        raise PostError("nothing to post: the text is empty")
    try:
        return node.post(text, timestamp_ms=_now_ms())
    except (ValueError, ForkError) as exc:  # content too long; our own feed forked
        raise PostError(str(exc)) from exc


def post(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"text"} -> {"id", "author", "seq"}: one post, flushed."""
    entry = _post(node, _arg_str(args, "text"))
    node.flush()
    return entry_ref(entry)


def post_many(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"texts": [...]} -> {"posted", "error", "failed_index"}: stops at the first failure."""
    texts = args.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError("argument 'texts' must be a list of strings")
    if len(texts) > MAX_POSTS_PER_REQUEST:
        raise RequestError(f"argument 'texts' holds more than {MAX_POSTS_PER_REQUEST} posts")
    posted, error, failed = 0, None, None
    for i, text in enumerate(texts):
        try:
            _post(node, text)
        except PostError as exc:
            error, failed = str(exc), i
            break
        posted += 1
        if posted % _FLUSH_EVERY == 0:
            node.flush()
    node.flush()
    return {"posted": posted, "error": error, "failed_index": failed}


def _publish(node: Node, content_type: int, content: bytes) -> dict[str, object]:
    try:
        entry = node.publish(content_type, content, timestamp_ms=_now_ms())
    except (ValueError, ForkError) as exc:  # content too long; our own feed forked
        raise PostError(str(exc)) from exc
    node.flush()
    return entry_ref(entry)


def reply(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"parent", "text"} -> {"id", "author", "seq"}: a post that answers entry ``parent``."""
    text = _arg_str(args, "text")
    if not text.strip():
        raise PostError("nothing to post: the text is empty")
    try:
        parent = parse_msg_id(_arg_str(args, "parent"))
    except DecodeError as exc:
        raise RequestError(f"argument 'parent': {exc}") from None
    return _publish(node, ContentType.REPLY, encode_reply(Reply(parent=parent, text=text)))


def about(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"name", "description"?} -> {"id", "author", "seq"}: who this feed says it is."""
    description = args.get("description", "")
    if not isinstance(description, str):
        raise RequestError("argument 'description' must be a string")
    try:
        content = encode_about(About(name=_arg_str(args, "name"), description=description))
    except ValueError as exc:
        raise PostError(str(exc)) from None
    return _publish(node, ContentType.ABOUT, content)


def timeline(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"limit"?, "before"?} -> {"entries", "next"}: every kept feed, newest first."""
    limit = _arg_int(args, "limit", 20) or 20
    before = args.get("before")
    try:
        cursor = decode_cursor(before) if isinstance(before, str) and before else None
    except DecodeError as exc:
        raise RequestError(f"argument 'before': {exc}") from None
    entries, following = timeline_page(node, limit=limit, before=cursor)
    nxt = encode_cursor(following) if following else None
    return {"entries": [entry_json(e) for e in entries], "next": nxt}


def contact(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"action", "target"} -> {"changed", ...}: a contact entry, unless it changes nothing."""
    try:
        action = ContactAction[_arg_str(args, "action").upper()]
    except KeyError:
        raise RequestError("argument 'action' must be follow, unfollow, block or unblock") from None
    target = _arg_feed(args, "target")
    if target == node.feed_id:
        raise PostError(f"{format_feed_id(target)} is this node's own feed")
    if not node.policy.graph.would_change(node.feed_id, Contact(action=action, target=target)):
        # Restating a follow or block would only grow the feed.
        return {"changed": False, "target": format_feed_id(target)}
    try:
        entry = node.set_contact(action, target, timestamp_ms=_now_ms())
    except ForkError as exc:
        raise PostError(str(exc)) from exc
    node.flush()
    return {"changed": True, **entry_ref(entry)}


def status(node: Node, args: Mapping[str, object]) -> dict[str, object]:
    """{"brief"?, "ranges"?} -> the node's status (see Node.status); brief gives only the
    sizes, ``ranges: false`` all but the range of every feed."""
    if args.get("brief"):
        stats = node.store.stats()
        return {"entries": stats.entries, "feeds": stats.feeds, "bytes": stats.entry_bytes}
    return node.status(ranges=args.get("ranges", True) is not False)


def feed(node: Node, args: Mapping[str, object]) -> Iterator[dict[str, object]]:
    """{"feed"?, "since"?, "limit"?} -> entry_json per entry, {"damaged": seq} per bad one."""
    feed_id = _arg_feed(args, "feed") if args.get("feed") is not None else node.feed_id
    since = _arg_int(args, "since", 0) or 0
    left = _arg_int(args, "limit", None)
    head = node.store.head(feed_id)
    if head is None:
        yield {"missing": format_feed_id(feed_id)}
        return
    while left is None or left > 0:
        try:
            for entry in node.iter_feed(feed_id, since=since, limit=left):
                yield entry_json(entry)
                since, left = entry.seq, None if left is None else left - 1
            return
        except (StoreCorrupt, DecodeError):
            # One damaged record must not hide the rest of the feed (`check` names it).
            since = max(since + 1, head.first)
            yield {"damaged": since, "feed": format_feed_id(feed_id)}


def usb_sync(node: Node, args: Mapping[str, object]) -> Iterator[dict[str, object] | Job[Any]]:
    """{"path"} -> progress steps and jobs (usb/merge.py), then {"summary": ...}."""
    path = args.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RequestError("argument 'path' must be the drive's absolute path")
    for item in sync_drive(node, Path(path), now_ms=int(time.time() * 1000)):
        yield {"summary": item.to_json()} if isinstance(item, SyncReport) else item


HANDLERS: dict[str, Callable[[Node, Mapping[str, object]], dict[str, object]]] = {
    "post": post,
    "post_many": post_many,
    "reply": reply,
    "about": about,
    "timeline": timeline,
    "contact": contact,
    "status": status,
}
Stream: TypeAlias = "Callable[[Node, Mapping[str, object]], Iterator[dict[str, object] | Job[Any]]]"
STREAMS: dict[str, Stream] = {
    "feed": feed,
    "usb_sync": usb_sync,
}

"""CLI commands on feeds: post, feed, follow, unfollow, block, unblock."""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meshnode.cli_context import emit_json, feed_id_arg, now_ms, open_node
from meshnode.codec.content import Contact, ContactAction, decode_contact
from meshnode.codec.message import ContentType
from meshnode.errors import DecodeError, MeshnodeError, StoreCorrupt
from meshnode.identity import format_feed_id, format_msg_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from meshnode.cli_context import Context
    from meshnode.codec.message import Entry
    from meshnode.node import Node

__all__ = ["add_feed_commands", "entry_json"]

log = logging.getLogger(__name__)

# Flush (fsync) a bulk post every this many entries, so a crash loses at most one batch.
_POST_BATCH = 1000
# Entries from others were checked against their sender's limit, which may exceed ours.
_PLAIN_LIMIT = 1 << 16
_CONTACT_VERBS = {
    ContactAction.FOLLOW: "followed",
    ContactAction.UNFOLLOW: "unfollowed",
    ContactAction.BLOCK: "blocked",
    ContactAction.UNBLOCK: "unblocked",
}


class PostError(MeshnodeError):
    """A post could not be made (too long, or our own feed is unusable)."""


class FeedError(MeshnodeError):
    """Some entries of a feed could not be read."""


def add_feed_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register post, feed and the contact commands."""
    p = sub.add_parser("post", help="sign and append a text post to our feed")
    p.add_argument(
        "text", metavar="TEXT", type=_post_text, help="the text, or - to post each line of stdin"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_post)

    p = sub.add_parser("feed", help="print the entries held of a feed (ours by default)")
    p.add_argument("feed", metavar="ID", nargs="?", type=feed_id_arg, help="feed id @...ed25519")
    p.add_argument("--since", metavar="SEQ", type=_non_negative, default=0, help="seq > SEQ")
    p.add_argument("--limit", metavar="N", type=_positive, help="at most N entries")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_feed)

    for action, verb in _CONTACT_VERBS.items():
        name = action.name.lower()
        p = sub.add_parser(name, help=f"publish a contact entry: {name} a feed")
        p.add_argument("target", metavar="ID", type=feed_id_arg, help="feed id @...ed25519")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=cmd_contact, action=action, verb=verb)


def _post_text(text: str) -> str:
    """argparse type for TEXT: not blank, and valid UTF-8 (argv may hold any bytes)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("nothing to post: TEXT is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("TEXT is not valid UTF-8") from None
    return text


def _non_negative(text: str) -> int:
    return _bounded_int(text, 0)


def _positive(text: str) -> int:
    return _bounded_int(text, 1)


def _bounded_int(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
    return value


def _entry_ref(entry: Entry) -> dict[str, object]:
    return {"id": format_msg_id(entry.id), "author": format_feed_id(entry.author), "seq": entry.seq}


def _post_one(node: Node, text: str) -> Entry:
    try:
        return node.post(text, timestamp_ms=now_ms())
    except ValueError as exc:  # content over max_content_bytes
        raise PostError(str(exc)) from exc


def cmd_post(ctx: Context, args: argparse.Namespace) -> int:
    """post TEXT, or post - for one post per stdin line."""
    with open_node(ctx) as node:
        if args.text != "-":
            entry = _post_one(node, args.text)
            node.flush()
            if args.json:
                emit_json(_entry_ref(entry))
            else:
                print(f"posted #{entry.seq} {format_msg_id(entry.id)}")
            return 0
        posted = _post_lines(node)
    if args.json:
        emit_json({"posted": posted})
    else:
        print(f"posted {posted} entries")
    return 0


def _stdin_lines() -> Iterator[bytes]:
    """Lines of stdin as bytes: posts are UTF-8 whatever the locale's encoding."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is not None:
        return iter(binary)
    return (line.encode("utf-8", "surrogateescape") for line in sys.stdin)


def _post_line(node: Node, line: bytes) -> bool:
    """Post one line of stdin; False for a blank line, which is skipped."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise PostError("not valid UTF-8") from None
    if not text.strip():
        return False
    _post_one(node, text)
    return True


def _post_lines(node: Node) -> int:
    posted = 0
    for number, line in enumerate(_stdin_lines(), 1):
        try:
            if not _post_line(node, line):
                continue
        except PostError as exc:
            node.flush()
            raise PostError(f"stdin line {number}: {exc} ({posted} posted before it)") from exc
        posted += 1
        if posted % _POST_BATCH == 0:
            node.flush()
    node.flush()
    return posted


def cmd_feed(ctx: Context, args: argparse.Namespace) -> int:
    """Print a feed's entries, oldest first; damaged ones are skipped, then reported."""
    with open_node(ctx) as node:
        feed = args.feed if args.feed is not None else node.feed_id
        head = node.store.head(feed)
        if head is None:
            log.warning("nothing is held of feed %s", format_feed_id(feed))
            return 0
        since, left, damaged = args.since, args.limit, []
        while left is None or left > 0:
            try:
                for entry in node.iter_feed(feed, since=since, limit=left):
                    if args.json:
                        emit_json(entry_json(entry))
                    else:
                        print(_entry_line(entry))
                    since, left = entry.seq, None if left is None else left - 1
                break
            except (StoreCorrupt, DecodeError) as exc:
                # One damaged record must not hide the rest of the feed (`check` names it).
                log.info("skipping a damaged entry: %s", exc)
                since = max(since + 1, head.first)
                damaged.append(since)
    if damaged:
        noun = "entry" if len(damaged) == 1 else "entries"
        seqs = ", ".join(f"#{seq}" for seq in damaged)
        raise FeedError(
            f"skipped damaged {noun} {seqs} of {format_feed_id(feed)}; run meshnode check"
        )
    return 0


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
            contact = decode_contact(plain)
            target = format_feed_id(contact.target)
            out["contact"] = {"action": contact.action.name.lower(), "target": target}
            return out
    except (DecodeError, UnicodeDecodeError):
        plain = entry.content
    out["content_b64"] = base64.b64encode(plain).decode("ascii")
    return out


def _entry_line(entry: Entry) -> str:
    data = entry_json(entry)
    head = f"#{entry.seq:<5} {_format_time(entry.timestamp_ms)}"
    if "text" in data:
        # One line per entry: a multi-line post is joined; --json keeps it exact.
        return f"{head}  " + " ".join(str(data["text"]).splitlines())
    contact = data.get("contact")
    if isinstance(contact, dict):
        return f"{head}  [{contact['action']}] {contact['target']}"
    return f"{head}  [{data['type']}] {len(entry.content)} bytes"


def _format_time(timestamp_ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"@{timestamp_ms}ms"  # authors claim any time; it may be out of range
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_contact(ctx: Context, args: argparse.Namespace) -> int:
    """follow / unfollow / block / unblock ID: a contact entry in our own feed."""
    with open_node(ctx) as node:
        if args.target == node.feed_id:
            raise PostError(f"{format_feed_id(args.target)} is this node's own feed")
        contact = Contact(action=args.action, target=args.target)
        if not node.policy.graph.would_change(node.feed_id, contact):
            # Restating a follow or block would only grow the feed: say so and stop.
            if args.json:
                emit_json({"changed": False, "target": format_feed_id(args.target)})
            else:
                print(f"nothing to do: already {args.verb} {format_feed_id(args.target)}")
            return 0
        entry = node.set_contact(args.action, args.target, timestamp_ms=now_ms())
        node.flush()
    if args.json:
        emit_json({"changed": True, **_entry_ref(entry)})
    else:
        print(f"{args.verb} {format_feed_id(args.target)} (#{entry.seq})")
    return 0

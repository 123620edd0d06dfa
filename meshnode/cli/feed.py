"""CLI commands on feeds: post, feed, follow, unfollow, block, unblock."""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meshnode.cli.context import emit_json, feed_id_arg, open_access
from meshnode.cli.terminal import visible
from meshnode.codec.content import ContactAction
from meshnode.daemon.ops import MAX_POSTS_PER_REQUEST, PostError
from meshnode.errors import MeshnodeError
from meshnode.secure.identity import format_feed_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from meshnode.cli.context import Context
    from meshnode.daemon.control import Access

__all__ = ["add_feed_commands"]

log = logging.getLogger(__name__)

_CONTACT_VERBS = {
    ContactAction.FOLLOW: "followed",
    ContactAction.UNFOLLOW: "unfollowed",
    ContactAction.BLOCK: "blocked",
    ContactAction.UNBLOCK: "unblocked",
}


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

    p = sub.add_parser("reply", help="answer an entry: a post in its thread")
    p.add_argument("parent", metavar="ID", help="the entry's id %%...sha256")
    p.add_argument("text", metavar="TEXT", type=_post_text, help="the text")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser("about", help="publish this feed's name and description")
    p.add_argument("--name", required=True, help="the name people see")
    p.add_argument("--description", default="", help="a few words about you")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_about)

    p = sub.add_parser("timeline", help="entries of every kept feed, newest first")
    p.add_argument("--limit", metavar="N", type=_positive, default=20, help="at most N (100)")
    p.add_argument("--before", metavar="CURSOR", help="the page after this one (from --json)")
    p.add_argument("--json", action="store_true", help="print JSON: entries and next cursor")
    p.set_defaults(func=cmd_timeline)

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


def cmd_post(ctx: Context, args: argparse.Namespace) -> int:
    """post TEXT, or post - for one post per stdin line."""
    with open_access(ctx) as access:
        if args.text != "-":
            ref = access.call("post", text=args.text)
            if args.json:
                emit_json(ref)
            else:
                print(f"posted #{ref['seq']} {ref['id']}")
            return 0
        posted = _post_lines(access)
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


def _post_lines(access: Access) -> int:
    """Post each non-blank line of stdin, in batches; stop at the first bad line."""
    posted = 0
    batch: list[tuple[int, str]] = []

    def send() -> None:
        nonlocal posted
        if not batch:
            return
        result = access.call("post_many", texts=[text for _, text in batch])
        count = result.get("posted")
        posted += count if isinstance(count, int) else 0
        failed = result.get("failed_index")
        if isinstance(failed, int):
            number = batch[failed][0]
            raise PostError(
                f"stdin line {number}: {result.get('error')} ({posted} posted before it)"
            )
        batch.clear()

    for number, line in enumerate(_stdin_lines(), 1):
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            send()
            text = f"stdin line {number}: not valid UTF-8 ({posted} posted before it)"
            raise PostError(text) from None
        if text.strip():
            batch.append((number, text))
        if len(batch) == MAX_POSTS_PER_REQUEST:
            send()
    send()
    return posted


def cmd_reply(ctx: Context, args: argparse.Namespace) -> int:
    """reply ID TEXT."""
    return _publish(ctx, args, "reply", "replied #{seq} {id}", parent=args.parent, text=args.text)


def cmd_about(ctx: Context, args: argparse.Namespace) -> int:
    """about --name NAME [--description TEXT]."""
    line = "about #{seq}: " + args.name.replace("{", "{{").replace("}", "}}")
    return _publish(ctx, args, "about", line, name=args.name, description=args.description)


def _publish(ctx: Context, args: argparse.Namespace, cmd: str, line: str, **request: object) -> int:
    """Run one publishing request; print its entry ref as JSON or as ``line`` filled in."""
    with open_access(ctx) as access:
        ref = access.call(cmd, **request)
    if args.json:
        emit_json(ref)
    else:
        print(line.format(seq=ref["seq"], id=ref["id"]))
    return 0


def cmd_timeline(ctx: Context, args: argparse.Namespace) -> int:
    """timeline: newest first, one line per entry, and how to get the next page."""
    with open_access(ctx) as access:
        page = access.call("timeline", limit=min(args.limit, 100), before=args.before or "")
    if args.json:
        emit_json(page)
        return 0
    entries = page.get("entries")
    for item in entries if isinstance(entries, list) else []:
        author = str(item.get("author", ""))[:9]
        print(f"{author}… {_entry_line(item)}")
    if page.get("next"):
        print(f"more: meshnode timeline --before {page['next']}")
    return 0


def cmd_feed(ctx: Context, args: argparse.Namespace) -> int:
    """Print a feed's entries, oldest first; damaged ones are skipped, then reported."""
    name = format_feed_id(args.feed) if args.feed is not None else None
    damaged: list[int] = []
    with open_access(ctx) as access:
        for item in access.stream("feed", feed=name, since=args.since, limit=args.limit):
            if "missing" in item:
                log.warning("nothing is held of feed %s", item["missing"])
                return 0
            seq = item.get("damaged")
            if isinstance(seq, int):
                log.info("skipping damaged entry #%d", seq)
                damaged.append(seq)
                name = str(item.get("feed", name))
            elif args.json:
                emit_json(item)
            else:
                print(_entry_line(item))
    if damaged:
        noun = "entry" if len(damaged) == 1 else "entries"
        seqs = ", ".join(f"#{seq}" for seq in damaged)
        raise FeedError(
            f"skipped damaged {noun} {seqs} of {name or 'our feed'}; run meshnode check"
        )
    return 0


def _entry_line(data: dict[str, object]) -> str:
    seq, timestamp = data.get("seq"), data.get("timestamp")
    head = f"#{seq!s:<5} {_format_time(timestamp if isinstance(timestamp, int) else 0)}"
    # What an author wrote is shown, never obeyed: its control characters are escaped.
    if "text" in data:
        # One line per entry: a multi-line post is joined; --json keeps it exact.
        text = _one_line(data["text"])
        return f"{head}  {'[reply] ' if 'parent' in data else ''}{text}"
    about = data.get("about")
    if isinstance(about, dict):
        return f"{head}  [about] {visible(str(about['name']))}: {_one_line(about['description'])}"
    contact = data.get("contact")
    if isinstance(contact, dict):
        return f"{head}  [{visible(str(contact['action']))}] {visible(str(contact['target']))}"
    size = len(base64.b64decode(str(data.get("content_b64", ""))))
    return f"{head}  [{visible(str(data['type']))}] {size} bytes"


def _one_line(text: object) -> str:
    """Text of any length on one line: its lines joined, then made visible."""
    return visible(" ".join(str(text).splitlines()))


def _format_time(timestamp_ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"@{timestamp_ms}ms"  # authors claim any time; it may be out of range
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_contact(ctx: Context, args: argparse.Namespace) -> int:
    """follow / unfollow / block / unblock ID: a contact entry in our own feed."""
    target = format_feed_id(args.target)
    with open_access(ctx) as access:
        result = access.call("contact", action=args.action.name.lower(), target=target)
    if args.json:
        emit_json(result)
    elif not result.get("changed"):
        # Restating a follow or block would only grow the feed: say so and stop.
        print(f"nothing to do: already {args.verb} {target}")
    else:
        print(f"{args.verb} {target} (#{result['seq']})")
    return 0

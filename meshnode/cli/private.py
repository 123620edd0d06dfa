"""CLI commands for private messages: dm, inbox, keys and mailbox.

Each goes through the daemon's control socket when it runs, else opens the node itself
(cli/context.open_access); the work is done in daemon/private_ops.py either way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from meshnode.cli.context import emit_json, feed_id_arg, format_bytes, open_access
from meshnode.cli.terminal import visible
from meshnode.secure.identity import format_feed_id
from meshnode.secure.private import MAX_RECIPIENTS

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from meshnode.cli.context import Context

__all__ = ["add_private_commands"]


def add_private_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register dm, inbox, keys, reach and mailbox."""
    p = sub.add_parser("dm", help="send a private message to 1 to 7 people")
    p.add_argument(
        "to",
        metavar="ID",
        nargs="+",
        help=f"1 to {MAX_RECIPIENTS} recipients: feed ids @...ed25519, or unique names",
    )
    p.add_argument("text", metavar="TEXT", help="the message")
    p.add_argument(
        "--accept-new-key",
        action="store_true",
        help="send even to a recipient whose key changed (and pin the new key)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_dm)

    p = sub.add_parser("inbox", help="read the private messages to and from this node")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser("keys", help="this node's encryption key and the contacts' pinned keys")
    keys = p.add_subparsers(dest="keys_cmd", metavar="COMMAND")
    p.set_defaults(func=cmd_keys, accept=None)
    _verb_on_feed(keys, "accept", "pin a contact's new key (after checking with them)", cmd_keys)
    q = keys.add_parser("publish", help="publish this node's key, naming its mailbox boxes")
    q.add_argument(
        "--home",
        metavar="ID",
        action="append",
        type=feed_id_arg,
        help="a box that keeps your private messages (repeatable, up to 3); default: as now",
    )
    q.add_argument(
        "--new-key",
        action="store_true",
        help="publish the next generation of your key (old messages stay readable here)",
    )
    q.set_defaults(func=cmd_keys_publish)
    for q in (p, *keys.choices.values()):
        q.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("reach", help="how much of a feed each known peer is known to hold")
    p.add_argument("feed", metavar="ID", type=feed_id_arg, help="feed id @...ed25519")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_reach)

    p = sub.add_parser("mailbox", help="what this box keeps for people who are away")
    boxes = p.add_subparsers(dest="mailbox_cmd", metavar="COMMAND")
    p.set_defaults(func=cmd_mailbox, serve=None)
    q = _verb_on_feed(
        boxes, "serve", "serve a person: follow them, so their contacts are kept", cmd_mailbox
    )
    for parser in (p, q):
        parser.add_argument("--json", action="store_true", help="print JSON")


def _verb_on_feed(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    func: Callable[[Context, argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """``name ID``: its feed id lands in ``args.<name>``."""
    q = verbs.add_parser(name, help=help_text)
    q.add_argument(name, metavar="ID", type=feed_id_arg, help="their feed id")
    q.set_defaults(func=func)
    return q


def _time(ms: object) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _ask(
    ctx: Context, args: argparse.Namespace, cmd: str, **request: object
) -> dict[str, Any] | None:
    """Run ``cmd``; with --json print its result and return None, else return it."""
    with open_access(ctx) as access:
        result = access.call(cmd, **request)
    if args.json:
        emit_json(result)
        return None
    return result


def cmd_dm(ctx: Context, args: argparse.Namespace) -> int:
    """dm ID... TEXT."""
    ref = _ask(ctx, args, "dm", to=args.to, text=args.text, accept_new_key=args.accept_new_key)
    if ref is None:
        return 0
    pinned = ref.get("pinned")
    for feed in pinned if isinstance(pinned, list) else []:
        print(f"pinned the encryption key of {feed}")
    fits = "fits one LoRa frame" if ref["fits_one_lora_frame"] else "needs several LoRa frames"
    print(f"sent #{ref['seq']} {ref['id']}")
    print(f"{ref['bytes']} bytes ({ref['short_bytes']} on the air: {fits})")
    return 0


def cmd_inbox(ctx: Context, args: argparse.Namespace) -> int:
    """inbox: conversations, newest first."""
    with open_access(ctx) as access:
        result: dict[str, object] = {}
        for item in access.stream("inbox"):
            found = item.get("inbox")
            if isinstance(found, dict):
                result = found
        result["warnings"] = access.call("key_warnings")["warnings"]
    if args.json:
        emit_json(result)
        return 0
    for warning in result["warnings"]:  # type: ignore[attr-defined]
        print(f"WARNING: {visible(str(warning))}")
    conversations: list[dict[str, object]] = result["conversations"]  # type: ignore[assignment]
    if not conversations:
        print("no private messages")
    for conversation in conversations:
        _print_conversation(conversation)
    return 0


def _print_conversation(conversation: dict[str, object]) -> None:
    names = conversation["names"]
    people = conversation["with"]
    assert isinstance(names, list)
    assert isinstance(people, list)
    shown = {p: visible(n) if n else p for n, p in zip(names, people, strict=True)}
    print(f"== with {', '.join(shown.values()) or 'yourself'}")
    messages = conversation["messages"]
    assert isinstance(messages, list)
    for m in messages:
        who = "you" if m["sent"] else shown.get(m["author"], m["author"])
        print(f"  {_time(m['timestamp'])}  {who}: {visible(m['text'])}")
        if m["sent"]:
            for d in m["delivered"]:
                state = _delivery_text(d)
                print(f"      to {d['recipient']}: {state}")


def _delivery_text(d: dict[str, list[str]]) -> str:
    if not d["homes"]:
        return "no mailbox box known for them"
    if d["reached"]:
        return f"reached their box {d['reached'][0]}"
    return f"not yet at any of their {len(d['homes'])} box(es)"


def cmd_keys(ctx: Context, args: argparse.Namespace) -> int:
    """keys [accept ID]."""
    accept = format_feed_id(args.accept) if args.accept is not None else None
    result = _ask(ctx, args, "keys", accept=accept)
    if result is None:
        return 0
    own = result["own"]
    if isinstance(own, dict):
        print(f"your key  {own['key']} (generation {own['generation']})")
        print(f"homes     {', '.join(own['homes']) or 'none'}")
    else:
        print("your key  not published yet (meshnode keys publish)")
    pins = result["pins"]
    assert isinstance(pins, list)
    for pin in pins:
        state = "CHANGED to " + str(pin["published"]) if pin["changed"] else "ok"
        print(f"{pin['feed']}  {visible(pin['name'] or '')}  pinned {pin['pinned']}  {state}")
    if accept is not None:
        print(f"accepted the key of {accept}")
    return 0


def cmd_keys_publish(ctx: Context, args: argparse.Namespace) -> int:
    """keys publish [--home ID]..."""
    homes = [format_feed_id(h) for h in args.home] if args.home else None
    result = _ask(ctx, args, "keys_publish", homes=homes, new_key=args.new_key)
    if result is None:
        return 0
    if result["published"] is None:
        print("your key is already published as asked")
    else:
        print(f"published your key: {result['published']['id']}")
    return 0


def cmd_reach(ctx: Context, args: argparse.Namespace) -> int:
    """reach ID: peer -> highest seq of the feed it is known to hold."""
    result = _ask(ctx, args, "reach", feed=format_feed_id(args.feed))
    if result is None:
        return 0
    held = result["reach"]
    for peer, seq in held.items():
        print(f"{peer}  {seq}")
    return 0


def cmd_mailbox(ctx: Context, args: argparse.Namespace) -> int:
    """mailbox [serve ID]."""
    serve = format_feed_id(args.serve) if args.serve is not None else None
    result = _ask(ctx, args, "mailbox", serve=serve)
    if result is None:
        return 0
    print(
        f"keeps {result['kept_entries']} private entries of {result['authors']} authors "
        f"for {result['keep_days']:g} days: {format_bytes(result['held_bytes'])} held of "
        f"{format_bytes(result['max_bytes'])} ({format_bytes(result['author_max_bytes'])} "
        "per author)"
    )
    serves = result["serves"]
    assert isinstance(serves, list)
    print(f"serves {len(serves)} people (their key names this box)")
    for feed in serves:
        print(f"  {feed}")
    return 0

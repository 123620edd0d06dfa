"""Private messages as control requests: dm, inbox, keys, mailbox and reach.

Like ops.py, one table serves the CLI on a node it opened and the daemon's control socket;
these handlers also need the data dir's pinned keys (host/keypins.py), so the table is
made per data dir by ``private_handlers``. The secret keys never leave the node's process:
the CLI gets text, ids and fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from meshnode.codec.channel import encode_entry_message
from meshnode.codec.content import (
    ContactAction,
    EncKey,
    PrivateInner,
    encode_enckey,
    encode_private_inner,
    recipient_tag,
)
from meshnode.codec.message import ContentType, encode_short_entry
from meshnode.core.inbox import (
    Message,
    feeds_by_tag,
    key_fingerprint,
    latest_enckey,
    my_keypairs,
    private_messages,
    reached_homes,
)
from meshnode.core.views import latest_about
from meshnode.daemon.ops import (
    PostError,
    RequestError,
    _arg_feed,
    _arg_str,
    _now_ms,
    _publish,
    entry_ref,
)
from meshnode.errors import DecodeError, ForkError
from meshnode.host.keypins import KeyPins, Pin, keypins_path
from meshnode.radio import rnode
from meshnode.radio.fragment import max_payload
from meshnode.secure.identity import format_feed_id, format_msg_id, parse_feed_id
from meshnode.secure.private import MAX_RECIPIENTS, enc_keypair, seal

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from meshnode.core.node import Node
    from meshnode.types import FeedId

__all__ = [
    "LORA_ENTRY_BYTES",
    "STREAMS",
    "KeyChanged",
    "private_handlers",
    "private_requests",
    "publish_own_enckey",
]

# The largest short-form entry one LoRa frame carries at the default radio settings (an
# RNode): the frame's message room less an ENTRY message's header with a 3-byte seq.
LORA_ENTRY_BYTES = max_payload(rnode.MTU_BYTES) - len(
    encode_entry_message(bytes(4), bytes(4), 1 << 20, b"")
)
MAX_INBOX_MESSAGES = 10_000  # newest kept in one answer; older ones are counted
_STEP_ENTRIES = 5000  # entries read between two progress steps (the daemon's loop runs)

PlainHandler = Callable[["Node", "Mapping[str, object]"], dict[str, object]]


class KeyChanged(PostError):
    """A recipient's published key differs from the one pinned for them."""


def _changed_warning(node: Node, feed: FeedId, pin: Pin, enckey: EncKey) -> str:
    return (
        f"the encryption key of {_display(node, feed)} changed: pinned "
        f"{key_fingerprint(pin.key)} (generation {pin.generation}), now "
        f"{key_fingerprint(enckey.key)} (generation {enckey.generation}). "
        "Check with them that they reset their key, then run: meshnode keys accept "
        f"{format_feed_id(feed)}"
    )


def _display(node: Node, feed: FeedId) -> str:
    about = latest_about(node, feed)
    return f"{about.name} ({format_feed_id(feed)})" if about else format_feed_id(feed)


def _resolve(node: Node, who: str) -> FeedId:
    """A feed id, or the one feed held whose latest name is ``who`` (case-insensitive)."""
    try:
        return parse_feed_id(who)
    except DecodeError:
        pass
    wanted = who.strip().casefold()
    found = [
        feed
        for feed in node.store.feeds()
        if (about := latest_about(node, feed)) and about.name.casefold() == wanted
    ]
    if len(found) != 1:
        why = "no one held has that name" if not found else f"{len(found)} people have that name"
        raise PostError(f"{who!r}: {why}; use their feed id @...ed25519")
    return found[0]


def _recipient_keys(
    node: Node, pins: KeyPins, feeds: list[FeedId], accept: bool
) -> tuple[list[EncKey], list[FeedId]]:
    """Each recipient's published key, and the recipients whose key is to be pinned once
    the message is sent; KeyChanged for a key that differs from its pin."""
    saved = pins.load()
    keys, pinned = [], []
    for feed in feeds:
        found = latest_enckey(node, feed)
        if found is None:
            raise PostError(
                f"{_display(node, feed)} has published no encryption key yet (a phone "
                "publishes one when its inbox is first opened, a node with `meshnode keys "
                "publish` or its first private message), so they cannot be written to"
            )
        enckey = found[1]
        pin = saved.get(feed)
        if pin is not None and pin.key != enckey.key and not accept:
            raise KeyChanged(_changed_warning(node, feed, pin, enckey))
        if pin is None or pin.key != enckey.key:
            pinned.append(feed)
        keys.append(enckey)
    return keys, pinned


def dm(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{"to": [id or name], "text", "accept_new_key"?} -> the entry, its size and recipients."""
    to, text = args.get("to"), _arg_str(args, "text")
    if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
        raise RequestError("argument 'to' must be a list of feed ids or names")
    if not text.strip():
        raise PostError("nothing to send: the text is empty")
    feeds = list(dict.fromkeys(_resolve(node, who) for who in to))
    if node.feed_id in feeds:
        raise PostError("a private message is for others (you can always read your own)")
    if not 1 <= len(feeds) <= MAX_RECIPIENTS:
        raise PostError(f"a private message has 1 to {MAX_RECIPIENTS} recipients")
    keys, pinned = _recipient_keys(node, pins, feeds, args.get("accept_new_key") is True)
    inner = encode_private_inner(
        PrivateInner(
            content_type=ContentType.POST,
            recipient_tags=tuple(recipient_tag(f) for f in feeds),
            payload=text.encode("utf-8"),
        )
    )
    try:
        payload = seal(inner, [k.key for k in keys], my_keypairs(node, node.identity)[0].secret_key)
        entry = node.publish(ContentType.PRIVATE, payload, timestamp_ms=_now_ms())
    except (ValueError, ForkError) as exc:  # too long; a recipient's key is ours; forked
        raise PostError(str(exc)) from exc
    published = _first_enckey(node)
    node.flush()
    for feed, enckey in zip(feeds, keys, strict=True):
        if feed in pinned:
            pins.pin(feed, enckey, entry.timestamp_ms)
    short = len(encode_short_entry(entry))
    return {
        **entry_ref(entry),
        "recipients": [format_feed_id(f) for f in feeds],
        "bytes": len(entry.raw),
        "short_bytes": short,
        "fits_one_lora_frame": short <= LORA_ENTRY_BYTES,
        "pinned": [format_feed_id(f) for f in pinned],
        "published_key": published,
    }


def _pin_warnings(node: Node, pins: KeyPins) -> list[str]:
    out = []
    for feed, pin in sorted(pins.load().items()):
        found = latest_enckey(node, feed)
        if found is not None and found[1].key != pin.key:
            out.append(_changed_warning(node, feed, pin, found[1]))
    return out


def inbox(node: Node, args: Mapping[str, object]) -> Iterator[dict[str, object]]:
    """{} -> progress steps, then {"inbox": {"conversations", "older"}}: every private
    message our key opens, grouped by who takes part, newest first; sent ones say which
    of their recipients' homes hold them. A stream, so the daemon serves its links and
    timers while a big store is read."""
    messages: list[Message] = []
    total = node.store.stats().entries
    for item in private_messages(node, my_keypairs(node, node.identity), every=_STEP_ENTRIES):
        if isinstance(item, int):
            yield {"phase": "reading", "done": item, "total": total}
        else:
            messages.append(item)
    messages.sort(key=lambda m: (m.timestamp_ms, m.author, m.seq), reverse=True)
    older = max(0, len(messages) - MAX_INBOX_MESSAGES)
    messages = messages[:MAX_INBOX_MESSAGES]
    known = feeds_by_tag(node.store.feeds())
    reach = node.reach(node.feed_id)
    homes_of: dict[FeedId, tuple[FeedId, ...]] = {}
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for m in messages:
        people = _people(m, known)
        key = tuple(sorted({format_feed_id(m.author), *people} - {_me(node)}))
        groups.setdefault(key, []).append(_message_json(node, m, people, known, reach, homes_of))
    conversations = [
        {"with": list(key), "names": [_name(node, k) for k in key], "messages": items}
        for key, items in groups.items()
    ]
    yield {"inbox": {"conversations": conversations, "older": older}}


def key_warnings(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{} -> {"warnings": [...]}: one per contact whose published key differs from its pin."""
    return {"warnings": _pin_warnings(node, pins)}


def _me(node: Node) -> str:
    return format_feed_id(node.feed_id)


def _name(node: Node, feed_text: str) -> str | None:
    if feed_text.startswith("?"):
        return None
    about = latest_about(node, parse_feed_id(feed_text))
    return about.name if about else None


def _people(m: Message, known: Mapping[bytes, list[FeedId]]) -> list[str]:
    """The recipients' feed ids (a tag this node cannot place shows as ?hex)."""
    out = []
    for tag in m.recipient_tags:
        feeds = known.get(tag, [])
        out.append(format_feed_id(feeds[0]) if len(feeds) == 1 else f"?{tag.hex()}")
    return out


def _message_json(
    node: Node,
    m: Message,
    people: list[str],
    known: Mapping[bytes, list[FeedId]],
    reach: Mapping[FeedId, int],
    homes_of: dict[FeedId, tuple[FeedId, ...]],
) -> dict[str, object]:
    out: dict[str, object] = {
        "id": format_msg_id(m.id),
        "author": format_feed_id(m.author),
        "seq": m.seq,
        "timestamp": m.timestamp_ms,
        "recipients": people,
        "text": m.text,
        "sent": m.sent,
    }
    if m.parent is not None:
        out["parent"] = format_msg_id(m.parent)
    if m.sent:
        out["delivered"] = [
            _delivery(node, m, tag, known, reach, homes_of) for tag in m.recipient_tags
        ]
    return out


def _delivery(
    node: Node,
    m: Message,
    tag: bytes,
    known: Mapping[bytes, list[FeedId]],
    reach: Mapping[FeedId, int],
    homes_of: dict[FeedId, tuple[FeedId, ...]],
) -> dict[str, object]:
    """Whether a home box of the recipient tagged ``tag`` is known to hold message ``m``."""
    feeds = known.get(tag, [])
    if len(feeds) != 1:
        return {"recipient": f"?{tag.hex()}", "homes": [], "reached": []}
    feed = feeds[0]
    if feed not in homes_of:
        found = latest_enckey(node, feed)
        homes_of[feed] = found[1].homes if found is not None else ()
    homes = homes_of[feed]
    return {
        "recipient": format_feed_id(feed),
        "homes": [format_feed_id(h) for h in homes],
        "reached": [format_feed_id(h) for h in reached_homes(m.seq, homes, reach)],
    }


def keys(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{"accept"?: feed} -> our key and every pin, each with the key now published."""
    if args.get("accept") is not None:
        feed = _arg_feed(args, "accept")
        found = latest_enckey(node, feed)
        if found is None:
            raise PostError(f"{_display(node, feed)} has published no encryption key")
        pins.pin(feed, found[1], _now_ms())
    own = latest_enckey(node, node.feed_id)
    listed = []
    for feed, pin in sorted(pins.load().items()):
        found = latest_enckey(node, feed)
        listed.append(
            {
                "feed": format_feed_id(feed),
                "name": _name(node, format_feed_id(feed)),
                "pinned": key_fingerprint(pin.key),
                "generation": pin.generation,
                "first_seen": pin.first_seen_ms,
                "published": key_fingerprint(found[1].key) if found else None,
                "changed": found is not None and found[1].key != pin.key,
            }
        )
    mine = None
    if own is not None:
        homes = [format_feed_id(h) for h in own[1].homes]
        mine = {"key": key_fingerprint(own[1].key), "generation": own[1].generation, "homes": homes}
    return {"own": mine, "pins": listed}


def publish_own_enckey(
    node: Node, homes: tuple[FeedId, ...] | None = None, *, new_key: bool = False
) -> dict[str, object] | None:
    """Publish our key (the generation already published, else 0; the next one with
    ``new_key``) naming ``homes`` (default: the homes already published, else this node);
    None when it would change nothing."""
    own = latest_enckey(node, node.feed_id)
    generation = own[1].generation if own is not None else 0
    if own is not None and new_key:
        generation += 1
    if homes is None:
        homes = own[1].homes if own is not None else (node.feed_id,)
    keypair = enc_keypair(node.identity.seed, generation)
    enckey = EncKey(key=keypair.public_key, generation=generation, homes=homes)
    if own is not None and own[1] == enckey:
        return None
    try:
        return _publish(node, ContentType.ENCKEY, encode_enckey(enckey))
    except ValueError as exc:
        raise PostError(str(exc)) from exc


def _first_enckey(node: Node) -> bool:
    """Publish our key, naming this node as home, when none is published yet (so that
    whoever we write to, or who uses this box, can write to us); True if it did."""
    if latest_enckey(node, node.feed_id) is not None:
        return False
    return publish_own_enckey(node) is not None


def keys_publish(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{"homes"?: [feed], "new_key"?} -> {"published": entry or None}: our key (a new
    generation with ``new_key``), naming its mailbox boxes."""
    raw = args.get("homes")
    homes = None
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
            raise RequestError("argument 'homes' must be a list of feed ids")
        try:
            homes = tuple(dict.fromkeys(parse_feed_id(h) for h in raw))
        except DecodeError as exc:
            raise RequestError(f"argument 'homes': {exc}") from None
    new_key = args.get("new_key") is True
    return {"published": publish_own_enckey(node, homes, new_key=new_key)}


def mailbox(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{"serve"?: feed} -> the mailbox's totals and the people whose key names this box."""
    if args.get("serve") is not None:
        feed = _arg_feed(args, "serve")
        if feed != node.feed_id and feed not in node.policy.graph.follows.get(node.feed_id, ()):
            try:
                node.set_contact(ContactAction.FOLLOW, feed, timestamp_ms=_now_ms())
            except ForkError as exc:
                raise PostError(str(exc)) from exc
        _first_enckey(node)
        node.flush()
    served = []
    for feed in sorted(node.replicated()):
        if feed == node.feed_id:
            continue
        found = latest_enckey(node, feed)
        if found is not None and node.feed_id in found[1].homes:
            served.append(format_feed_id(feed))
    return {**node.mailbox.status(), "serves": served}


def reach(node: Node, pins: KeyPins, args: Mapping[str, object]) -> dict[str, object]:
    """{"feed"} -> {"reach": {peer: seq}}: who is known to hold how much of a feed."""
    held = node.reach(_arg_feed(args, "feed"))
    return {"reach": {format_feed_id(p): seq for p, seq in sorted(held.items())}}


STREAMS = {"inbox": inbox}
_TABLE = {
    "dm": dm,
    "key_warnings": key_warnings,
    "keys": keys,
    "keys_publish": keys_publish,
    "mailbox": mailbox,
    "reach": reach,
}


def private_requests(data_dir: Path | None) -> dict[str, PlainHandler]:
    """The handlers above for the node of ``data_dir`` (none without one)."""
    return {} if data_dir is None else private_handlers(KeyPins(keypins_path(data_dir)))


def private_handlers(pins: KeyPins) -> dict[str, PlainHandler]:
    """The handlers above, bound to one data dir's pinned keys."""

    def bind(
        handler: Callable[[Node, KeyPins, Mapping[str, object]], dict[str, object]],
    ) -> PlainHandler:
        return lambda node, args: handler(node, pins, args)

    return {name: bind(handler) for name, handler in _TABLE.items()}

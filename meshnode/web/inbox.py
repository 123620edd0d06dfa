"""What a phone's inbox asks the box: every private entry it holds, keys, and reach.

A phone fetches *every* PRIVATE entry the box holds (``GET /api/private``) and tries to open
each one itself, so what a phone fetches tells the box nothing about whom it writes to or
hears from. The entries are listed in the order the box came to know them: those its store
held when the page's server started (read once, in the background, with the thread index),
then each one as it is stored. A cursor is ``GENERATION.NUMBER``: the generation changes
each time the server starts and numbers the entries afresh, and a cursor of another
generation starts from the beginning (the answer says ``restarted``).

``GET /api/keys`` lists each kept feed's latest ENCKEY (highest seq), the encryption key
others use to write to it, and the boxes it reads from (its homes). ``GET /api/reach``
says how far each box this one knows of holds a feed (``Node.reach``), so a phone can tell
whether a message it sent has reached a box that serves its recipient.

Both indexes are bounded: MAX_PRIVATE entries (the oldest forgotten first) and one key per
feed the box keeps, at most MAX_KEYED_FEEDS.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from meshnode.codec.content import decode_enckey
from meshnode.codec.message import ContentType
from meshnode.core.timeline import read_entry
from meshnode.errors import DecodeError
from meshnode.secure.identity import format_feed_id, format_msg_id
from meshnode.web.query import query_feed, query_int

if TYPE_CHECKING:
    from meshnode.codec.content import EncKey
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.types import FeedId, Seq

__all__ = [
    "MAX_KEYED_FEEDS",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_ENTRIES",
    "MAX_PRIVATE",
    "Inbox",
    "inbox_routes",
]

MAX_PRIVATE = 50_000  # private entries listed (about 6 MB of index at most); oldest go first
MAX_KEYED_FEEDS = 50_000  # feeds whose latest key is remembered (the box keeps fewer)
MAX_PAGE_ENTRIES = 500  # private entries in one answer at most
MAX_PAGE_BYTES = 512 * 1024  # entry bytes in one answer at most (an entry is up to ~8.3 KB)
MAX_KEYS_PAGE = 1000  # keys in one answer at most
MAX_REACH = 1000  # boxes in one reach answer at most (the node knows fewer)
READY_WAIT_S = 5.0  # a request made while the box first reads its feeds waits this long
_PLAIN_LIMIT = 1 << 16


class PrivateIndex:
    """Where each PRIVATE entry the box holds lives, numbered in the order it was added."""

    def __init__(self, limit: int = MAX_PRIVATE) -> None:
        self.limit = limit
        self.generation = secrets.token_hex(4)
        self._first = 1  # the number of _items[0]
        self._items: list[tuple[FeedId, Seq]] = []
        self._known: set[tuple[FeedId, Seq]] = set()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, entry: Entry) -> None:
        """Remember ``entry`` if it is a private entry not seen before."""
        where = (entry.author, entry.seq)
        if entry.content_type != ContentType.PRIVATE or where in self._known:
            return
        self._known.add(where)
        self._items.append(where)
        if len(self._items) > self.limit + self.limit // 8:  # trim in chunks: amortised O(1)
            drop = len(self._items) - self.limit
            self._known.difference_update(self._items[:drop])
            del self._items[:drop]
            self._first += drop

    def after(self, number: int) -> list[tuple[int, FeedId, Seq]]:
        """Every entry numbered above ``number``, oldest first, with its number."""
        start = max(0, number + 1 - self._first)
        return [(self._first + i, *self._items[i]) for i in range(start, len(self._items))]

    def parse_cursor(self, text: str) -> int | None:
        """The number a cursor of this generation names; None for another generation."""
        generation, _, number = text.partition(".")
        if generation != self.generation:
            return None
        if not number.isdigit() or len(number) > 18:
            raise DecodeError("a cursor is GENERATION.NUMBER")
        return int(number)

    def cursor(self, number: int) -> str:
        """The cursor after entry ``number``."""
        return f"{self.generation}.{number}"


class KeyIndex:
    """Each feed's latest ENCKEY (highest seq), as decoded."""

    def __init__(self, limit: int = MAX_KEYED_FEEDS) -> None:
        self.limit = limit
        self._keys: dict[FeedId, tuple[Seq, EncKey]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, entry: Entry) -> None:
        """Remember ``entry`` if it is an ENCKEY newer than the one known for its feed."""
        if entry.content_type != ContentType.ENCKEY:
            return
        known = self._keys.get(entry.author)
        if known is not None and known[0] >= entry.seq:
            return
        if known is None and len(self._keys) >= self.limit:
            return  # a full table keeps what it has: the box keeps fewer feeds than this
        try:
            key = decode_enckey(entry.plain_content(_PLAIN_LIMIT))
        except DecodeError:
            return  # a key that does not decode replaces nothing
        self._keys[entry.author] = (entry.seq, key)

    def get(self, feed: FeedId) -> tuple[Seq, EncKey] | None:
        """The latest key of ``feed`` and its seq."""
        return self._keys.get(feed)

    def feeds(self) -> list[FeedId]:
        """Every feed with a key, in byte order."""
        return sorted(self._keys)


class Inbox:
    """The two indexes, fed by the thread keeper's read of the store and by the node."""

    def __init__(self, node: Node, ready: asyncio.Event) -> None:
        self.node = node
        self.ready = ready  # set once the store's entries have all been read
        self.private = PrivateIndex()
        self.keys = KeyIndex()

    def add(self, entry: Entry) -> None:
        """Index ``entry`` (an entry listener)."""
        self.private.add(entry)
        self.keys.add(entry)


_INBOX_KEY = web.AppKey("inbox", Inbox)


async def _ready(request: web.Request) -> Inbox:
    inbox = request.app[_INBOX_KEY]
    try:
        await asyncio.wait_for(inbox.ready.wait(), READY_WAIT_S)
    except TimeoutError:
        raise web.HTTPServiceUnavailable(
            text="the box is still reading its feeds: try again"
        ) from None
    return inbox


async def private_entries(request: web.Request) -> web.Response:
    """GET /api/private?after=CURSOR&limit=N: private entries, in the order the box got them."""
    limit = query_int(request, "limit", 200, 1, MAX_PAGE_ENTRIES)
    inbox = await _ready(request)
    index = inbox.private
    try:
        number = index.parse_cursor(request.query.get("after", ""))
    except DecodeError as exc:
        raise web.HTTPBadRequest(text=f"after: {exc}") from None
    restarted = number is None and "after" in request.query
    listed = index.after(number or 0)
    out: list[dict[str, object]] = []
    size = 0
    last = number or 0
    for position, feed, seq in listed:
        entry = read_entry(inbox.node, feed, seq)
        if entry is not None:  # evicted entries are passed over
            if out and size + len(entry.raw) > MAX_PAGE_BYTES:
                break
            size += len(entry.raw)
            out.append(_private_json(entry))
        last = position
        if len(out) == limit:
            break
    more = bool(listed) and last < listed[-1][0]
    body = {"entries": out, "next": index.cursor(last), "more": more, "restarted": restarted}
    return web.json_response(body)


def _private_json(entry: Entry) -> dict[str, object]:
    return {
        "id": format_msg_id(entry.id),
        "author": format_feed_id(entry.author),
        "seq": entry.seq,
        "timestamp": entry.timestamp_ms,
        "raw": base64.b64encode(entry.raw).decode("ascii"),
    }


async def keys(request: web.Request) -> web.Response:
    """GET /api/keys?after=FEED&limit=N (or ?feed=ID): each feed's latest encryption key."""
    limit = query_int(request, "limit", MAX_KEYS_PAGE, 1, MAX_KEYS_PAGE)
    inbox = await _ready(request)
    if "feed" in request.query:
        feeds = [query_feed(request)]
    else:
        feeds = inbox.keys.feeds()
        if "after" in request.query:
            after = query_feed(request, "after")
            feeds = [f for f in feeds if f > after]
    out = []
    for feed in feeds[:limit]:
        found = inbox.keys.get(feed)
        if found is not None:
            out.append(_key_json(feed, *found))
    nxt = format_feed_id(feeds[limit - 1]) if len(feeds) > limit else None
    return web.json_response({"keys": out, "next": nxt})


def _key_json(feed: FeedId, seq: Seq, key: EncKey) -> dict[str, object]:
    return {
        "feed": format_feed_id(feed),
        "seq": seq,
        "key": base64.b64encode(key.key).decode("ascii"),
        "generation": key.generation,
        "homes": [format_feed_id(home) for home in key.homes],
    }


async def reach(request: web.Request) -> web.Response:
    """GET /api/reach?feed=ID: the highest seq of the feed each box this one knows holds."""
    inbox = request.app[_INBOX_KEY]
    feed = query_feed(request)
    held = sorted(inbox.node.reach(feed).items(), key=lambda item: (-item[1], item[0]))
    boxes = [{"box": format_feed_id(box), "seq": int(seq)} for box, seq in held[:MAX_REACH]]
    return web.json_response({"feed": format_feed_id(feed), "boxes": boxes})


def inbox_routes(app: web.Application, inbox: Inbox) -> None:
    """Put the inbox's calls on ``app``."""
    app[_INBOX_KEY] = inbox
    app.router.add_get("/api/private", private_entries)
    app.router.add_get("/api/keys", keys)
    app.router.add_get("/api/reach", reach)

"""The JSON API the page speaks: read the timeline and feeds, post signed entries, follow live.

Every request is checked before it costs anything: bodies are capped (``MAX_BODY_BYTES``),
query values parsed strictly, and a state-changing request must come from the page's own
origin with a type no HTML form can send (``application/octet-stream``), so another site
cannot post through a phone. Entries from browsers are verified exactly like entries from
peers; the box never holds a person's secret key, so it cannot forge their entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from aiohttp import web

from meshnode.codec.channel import encode_entry_message
from meshnode.codec.content import About, ContactAction
from meshnode.codec.message import decode_entry, entry_author
from meshnode.core.feed import Outcome, check_content
from meshnode.core.timeline import decode_cursor, encode_cursor, read_entry, timeline_page
from meshnode.core.views import entry_json, latest_about
from meshnode.errors import DecodeError, StoreError
from meshnode.radio import rnode
from meshnode.radio.fragment import max_payload
from meshnode.secure.identity import (
    format_feed_id,
    format_msg_id,
    network_tag,
    parse_msg_id,
)
from meshnode.web.inbox import Inbox, inbox_routes
from meshnode.web.operator import COOKIE, LOGINS_PER_MINUTE, SESSION_S, Operator
from meshnode.web.poster import PosterSettings, poster_html
from meshnode.web.query import query_feed, query_int
from meshnode.web.stream import KEEPALIVE_S, Hub, StreamsFull
from meshnode.web.threads import ThreadKeeper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.types import FeedId

__all__ = ["MAX_BODY_BYTES", "MAX_CLIENTS", "PostLimiter", "routes"]

# The largest short-form entry that one LoRa frame carries at the default radio settings (an
# RNode): the frame's message room less an ENTRY message's header with a 3-byte seq.
_ENTRY_HEAD_BYTES = len(encode_entry_message(bytes(4), bytes(4), 1 << 20, b""))
LORA_ENTRY_BYTES = max_payload(rnode.MTU_BYTES) - _ENTRY_HEAD_BYTES
MAX_BODY_BYTES = 64 * 1024  # an entry is at most ~8.3 KB; nothing the page sends is larger
MAX_CLIENTS = 1024  # clients whose posting rate is remembered; the oldest are forgotten
POSTS_PER_MINUTE = 60  # per client address: a person posts far less; a script is slowed
NEW_PEOPLE_PER_MINUTE = 1  # per client address: feeds the box starts keeping for a poster
THREADS_WAIT_S = 5.0  # a thread asked for while the box first reads its feeds waits this long


class PostLimiter:
    """Token buckets per client address, in a table of at most MAX_CLIENTS."""

    def __init__(
        self, per_minute: int = POSTS_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(per_minute)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Take one token for ``client``; False when it has none left."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return allowed


class Box:
    """What the handlers share: the node, its live hub and the daemon's wake-up."""

    def __init__(
        self,
        node: Node,
        *,
        name: str,
        on_change: Callable[[], None],
        data_dir: Path | None = None,
        poster: PosterSettings | None = None,
    ) -> None:
        self.node = node
        self.poster = poster or PosterSettings()  # the operator's poster: WiFi and address
        self.operator = Operator(node, data_dir, allow=PostLimiter(LOGINS_PER_MINUTE).allow)
        # Each kept feed's name, found once per latest seq (the table is as big as the feeds
        # the box keeps, which its policy bounds).
        self.names: dict[FeedId, tuple[int, About | None]] = {}
        self.name = name
        self.on_change = on_change
        self.hub = Hub()
        self.threads = ThreadKeeper(node)
        self.inbox = Inbox(node, self.threads.ready)  # private entries and keys
        self.threads.also.append(self.inbox.add)
        # The operator's view of the whole box (peers, radios, drives), which only the
        # daemon knows; without a daemon, the node's own status.
        self.status: Callable[[], dict[str, object]] = node.status
        self.posts = PostLimiter()
        self.people = PostLimiter(NEW_PEOPLE_PER_MINUTE)


_BOX_KEY = web.AppKey("box", Box)


def _box(request: web.Request) -> Box:
    return request.app[_BOX_KEY]


async def box_info(request: web.Request) -> web.Response:
    """GET /api/box: the box's name, id and network, and what a phone needs to sign."""
    box = _box(request)
    return web.json_response(
        {
            "name": box_name(box),
            "id": format_feed_id(box.node.feed_id),
            "network": network_tag(box.node.network_key),
            # Every signature covers the network key, so a phone must know it to post; on a
            # private network the page is how its people join (SECURITY.md).
            "network_key": box.node.network_key.hex(),
            "max_content_bytes": box.node.max_content_bytes,
            "lora_entry_bytes": LORA_ENTRY_BYTES,
        }
    )


async def timeline(request: web.Request) -> web.Response:
    """GET /api/timeline?limit=N&before=CURSOR: newest first, with the next page's cursor."""
    box = _box(request)
    limit = query_int(request, "limit", 20, 1, 100)
    before = request.query.get("before")
    try:
        cursor = decode_cursor(before) if before else None
    except DecodeError as exc:
        raise web.HTTPBadRequest(text=f"before: {exc}") from None
    entries, following = timeline_page(box.node, limit=limit, before=cursor)
    nxt = encode_cursor(following) if following else None
    return web.json_response({"entries": _entries_json(box, entries), "next": nxt})


def _entries_json(box: Box, entries: list[Entry]) -> list[dict[str, object]]:
    """entry_json of each, with how many replies the box holds for posts and replies."""
    out = []
    for entry in entries:
        item = entry_json(entry)
        if item["type"] in ("post", "reply"):
            item["replies"] = box.threads.index.reply_count(entry.id)
        out.append(item)
    return out


async def person(request: web.Request) -> web.Response:
    """GET /api/feed?feed=ID&before=SEQ&limit=N: a person's name and entries, newest first."""
    box = _box(request)
    feed = query_feed(request)
    limit = query_int(request, "limit", 20, 1, 100)
    before = query_int(request, "before", 1 << 62, 2, 1 << 62)
    about = _name_of(box, feed)
    head = box.node.store.head(feed)
    entries: list[Entry] = []
    nxt: int | None = None
    if head is not None:
        seq = min(int(head.latest), before - 1)
        while seq >= int(head.first) and len(entries) < limit:
            entry = read_entry(box.node, feed, seq)
            if entry is not None:
                entries.append(entry)
            seq -= 1
        nxt = seq + 1 if seq >= int(head.first) else None
    return web.json_response(
        {
            "feed": format_feed_id(feed),
            "name": about.name if about else None,
            "description": about.description if about else "",
            "kept": box.node.scope(feed) is not None,
            "box": feed == box.node.feed_id,
            "entries": _entries_json(box, entries),
            "next": nxt,
        }
    )


async def thread(request: web.Request) -> web.Response:
    """GET /api/thread?id=MSGID: the thread an entry belongs to, first post first."""
    box = _box(request)
    try:
        msg_id = parse_msg_id(request.query.get("id", "").replace(" ", "+"))
    except DecodeError as exc:
        raise web.HTTPBadRequest(text=f"id: {exc}") from None
    try:
        await asyncio.wait_for(box.threads.ready.wait(), THREADS_WAIT_S)
    except TimeoutError:
        raise web.HTTPServiceUnavailable(
            text="the box is still reading its feeds: try again"
        ) from None
    entries = box.threads.index.thread(box.node, msg_id)
    if not entries:
        raise web.HTTPNotFound(text="the box holds no such post")
    return web.json_response(
        {"root": format_msg_id(entries[0].id), "entries": _entries_json(box, entries)}
    )


async def feed_head(request: web.Request) -> web.Response:
    """GET /api/head?feed=ID: what the box holds of a feed (a phone signs after ``latest``)."""
    box = _box(request)
    feed = query_feed(request)
    head = box.node.store.head(feed)
    out: dict[str, object] = {
        "feed": format_feed_id(feed),
        "kept": box.node.scope(feed) is not None,
    }
    if head is None:
        out.update(first=0, latest=0, latest_id=None)
    else:
        out.update(first=head.first, latest=head.latest, latest_id=format_msg_id(head.latest_id))
    return web.json_response(out)


async def post_entry(request: web.Request) -> web.Response:
    """POST /api/entries: one signed full-form entry, verified like any other."""
    box = _box(request)
    _same_origin(request)
    if request.content_type != "application/octet-stream":
        raise web.HTTPUnsupportedMediaType(text="send the entry as application/octet-stream")
    client = request.remote or "unknown"
    if not box.posts.allow(client):
        raise web.HTTPTooManyRequests(text="too many posts from this address: wait a minute")
    raw = await request.read()
    try:
        result = box.node.ingest(raw)
        if result.outcome is Outcome.UNWANTED:
            _check_newcomer(box, raw, client)
            _keep_feed(box, entry_author(raw))
            result = box.node.ingest(raw)
    except StoreError as exc:
        raise web.HTTPServiceUnavailable(text=f"the box cannot store it: {exc}") from None
    except DecodeError as exc:
        result = None
        reason = f"malformed: {exc}"
    if result is not None and result.outcome in (Outcome.ADDED, Outcome.HELD):
        box.on_change()
        assert result.entry is not None
        status = 201 if result.outcome is Outcome.ADDED else 200
        body = {"outcome": result.outcome.value, "id": format_msg_id(result.entry.id)}
        return web.json_response(body, status=status)
    if result is not None:
        reason = result.reason
        outcome = result.outcome.value
    else:
        outcome = Outcome.REJECTED.value
    return web.json_response({"outcome": outcome, "reason": reason}, status=422)


def box_name(box: Box) -> str:
    """[web] box_name, else the name the box gave its own feed, else the host's name."""
    about = None if box.name else _name_of(box, box.node.feed_id)
    return box.name or (about.name if about else "") or socket.gethostname()


def _name_of(box: Box, feed: FeedId) -> About | None:
    latest = box.node.store.latest_seq(feed)
    known = box.names.get(feed)
    if known is None or known[0] != latest:
        known = (latest, latest_about(box.node, feed))
        box.names[feed] = known
    return known[1]


async def people(request: web.Request) -> web.Response:
    """GET /api/people?feed=ID: every feed the box keeps, its name, and what ID says of it."""
    box = _box(request)
    me = query_feed(request) if "feed" in request.query else None
    graph = box.node.policy.graph
    follows = graph.follows.get(me, set()) if me else set()
    blocks = graph.blocks.get(me, set()) if me else set()
    for feed in [f for f in box.names if box.node.scope(f) is None]:
        del box.names[feed]  # no longer kept: forget its name
    out = []
    for feed in sorted(box.node.replicated()):
        about = _name_of(box, feed)
        out.append(
            {
                "id": format_feed_id(feed),
                "name": about.name if about else None,
                "description": about.description if about else "",
                "latest": box.node.store.latest_seq(feed),
                "followed": feed in follows,
                "blocked": feed in blocks,
                "box": feed == box.node.feed_id,
            }
        )
    return web.json_response({"people": out})


def _check_newcomer(box: Box, raw: bytes, client: str) -> None:
    """Before the box keeps a new feed: not one it hides, a valid entry, not too many."""
    node = box.node
    if entry_author(raw) in node.policy.graph.blocks.get(node.feed_id, set()):
        raise web.HTTPForbidden(text="this box does not carry that feed")
    entry = decode_entry(raw, max_content_bytes=node.max_content_bytes)
    check_content(entry, node.network_key, node.max_content_bytes)  # DecodeError if forged
    if not box.people.allow(client):
        raise web.HTTPTooManyRequests(
            text="this box takes one new person a minute from each address: wait a minute"
        )


def _keep_feed(box: Box, feed: FeedId) -> None:
    """The box keeps the feed of a person who posts through its page: it follows them."""
    box.node.set_contact(ContactAction.FOLLOW, feed, timestamp_ms=time.time_ns() // 1_000_000)


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser's cross-site request: browsers always send Origin on POST
    scheme_host = origin.split("://", 1)[-1]
    if scheme_host != request.host:
        raise web.HTTPForbidden(text="requests that change the box must come from its own page")


async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/events: server-sent events naming the feeds that gained entries."""
    box = _box(request)
    try:
        queue = box.hub.open()
    except StreamsFull:
        raise web.HTTPServiceUnavailable(text="too many open pages: try again later") from None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                event = b": keepalive\n\n"
            if event is None:
                break
            await response.write(event)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the phone went away; its page reconnects when it can
    finally:
        box.hub.close(queue)
    return response


async def _json_body(request: web.Request) -> dict[str, object]:
    _same_origin(request)
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON (application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


async def operator_login(request: web.Request) -> web.Response:
    """POST /api/operator/login {"passphrase"}: a session cookie for the box's operator."""
    box = _box(request)
    passphrase = (await _json_body(request)).get("passphrase")
    if not isinstance(passphrase, str):
        raise web.HTTPBadRequest(text="passphrase must be a string")
    token = await box.operator.login(passphrase, request.remote or "unknown")
    response = web.json_response({"operator": True})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_S),
        path="/api/operator",
        httponly=True,
        samesite="Strict",
        secure=request.secure,  # over HTTPS the cookie never goes out over plain HTTP
    )
    return response


async def operator_status(request: web.Request) -> web.Response:
    """GET /api/operator/status: the box's status (sizes, caps, disk, peers, radios, drives)."""
    box = _box(request)
    box.operator.check(request)
    return web.json_response(box.status())


async def operator_hide(request: web.Request) -> web.Response:
    """POST /api/operator/hide {"feed"}: a box-wide block, logged."""
    box = _box(request)
    box.operator.check(request)
    feed = (await _json_body(request)).get("feed")
    if not isinstance(feed, str):
        raise web.HTTPBadRequest(text="feed must be a feed id")
    record = box.operator.hide(feed, request.remote or "unknown")
    box.on_change()
    return web.json_response(record)


async def operator_log(request: web.Request) -> web.Response:
    """GET /api/operator/log: what operators did, oldest first."""
    box = _box(request)
    box.operator.check(request)
    return web.json_response({"log": box.operator.log()})


async def operator_poster(request: web.Request) -> web.Response:
    """GET /api/operator/poster: the printable poster (WiFi and page QR codes), as HTML."""
    box = _box(request)
    box.operator.check(request)
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = int(sockname[1]) if sockname else request.url.port or 80  # the port it is served on
    url = box.poster.url(socket.gethostname(), port, https=request.secure)
    page = poster_html(box.poster.poster(box_name(box), url))
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def _keep_threads(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[_BOX_KEY].threads.read_store(), name="thread-index")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def routes(app: web.Application, box: Box) -> None:
    """Put the API on ``app``."""
    app[_BOX_KEY] = box
    box.node.add_entry_listener(box.threads.entry_stored)
    app.cleanup_ctx.append(_keep_threads)
    app.router.add_get("/api/box", box_info)
    app.router.add_get("/api/timeline", timeline)
    app.router.add_get("/api/head", feed_head)
    app.router.add_get("/api/people", people)
    app.router.add_get("/api/feed", person)
    app.router.add_get("/api/thread", thread)
    app.router.add_post("/api/entries", post_entry)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/operator/login", operator_login)
    app.router.add_get("/api/operator/status", operator_status)
    app.router.add_post("/api/operator/hide", operator_hide)
    app.router.add_get("/api/operator/log", operator_log)
    app.router.add_get("/api/operator/poster", operator_poster)
    inbox_routes(app, box.inbox)

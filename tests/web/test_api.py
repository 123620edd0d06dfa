"""The page's server in-process: its API, its limits and its headers, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshnode.codec.content import (
    About,
    Contact,
    ContactAction,
    Reply,
    encode_about,
    encode_contact,
    encode_reply,
)
from meshnode.codec.message import ContentType, create_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, format_msg_id
from meshnode.types import MsgId, Seq
from meshnode.web.api import MAX_BODY_BYTES, POSTS_PER_MINUTE, PostLimiter
from meshnode.web.server import make_app
from meshnode.web.stream import MAX_STREAMS, STREAM_QUEUE_EVENTS, Hub, StreamsFull
from tests.fakes import TS_MS, identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from meshnode.secure.identity import Identity

BOX, PHONE, ALICE, BOB = identity(1), identity(2), identity(3), identity(4)
OCTETS = {"Content-Type": "application/octet-stream"}
PHONE_FEED = {"feed": format_feed_id(PHONE.feed_id)}


def make_box(*authors: Identity, posts: int = 0) -> Node:
    node = Node(BOX, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))
    for author in authors:
        node.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=TS_MS)
        for entry in make_chain(author, posts):
            node.ingest(entry.raw)
    return node


def run_client(node: Node, test: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> list[int]:
    """Run ``test`` against the page server of ``node``; returns how often it woke the daemon."""
    woken: list[int] = []

    async def main() -> None:
        app, box = make_app(node, box_name="Village", on_change=lambda: woken.append(1))
        node.add_append_listener(box.hub.entry_stored)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 20)

    asyncio.run(main())
    return woken


def phone_post(seq: int, text: str, previous: MsgId | None = None, ts: int = TS_MS) -> bytes:
    return create_entry(
        PHONE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(seq),
        previous=previous,
        timestamp_ms=ts,
        content_type=ContentType.POST,
        content=text.encode(),
    ).raw


def test_the_page_and_its_files_are_served_with_a_strict_policy() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        page = await client.get("/")
        assert page.status == 200
        assert '<script type="module" src="/static/app.js">' in await page.text()
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        script = await client.get("/static/app.js")
        assert script.status == 200
        assert "textContent" in await script.text()
        for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/nothing.js"):
            response = await client.get(path)
            assert response.status in (403, 404), path
            assert "Content-Security-Policy" in response.headers

    run_client(make_box(), test)


def test_box_info_names_the_box_and_its_network() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        info = await (await client.get("/api/box")).json()
        assert info == {
            "name": "Village",
            "id": format_feed_id(BOX.feed_id),
            "network": "b3c4a8b5",
            "network_key": DEFAULT_NETWORK_KEY.hex(),
            "max_content_bytes": 8192,
            "lora_entry_bytes": 239,  # an RNode frame of 254 bytes less the link's headers
        }

    run_client(make_box(), test)


def test_the_timeline_pages_through_every_entry_newest_first_exactly_once() -> None:
    node = make_box(ALICE, BOB, posts=25)

    async def test(client: TestClient[Any, Any]) -> None:
        seen: list[dict[str, Any]] = []
        url = "/api/timeline?limit=7"
        while True:
            page = await (await client.get(url)).json()
            assert len(page["entries"]) <= 7
            seen += page["entries"]
            if page["next"] is None:
                break
            url = f"/api/timeline?limit=7&before={page['next']}"
        keys = [(e["timestamp"], e["author"], e["seq"]) for e in seen]
        assert len(set(keys)) == len(keys) == 25 + 25 + 2  # two posters and the box's follows
        stamps = [e["timestamp"] for e in seen]
        assert stamps == sorted(stamps, reverse=True)

    run_client(node, test)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=x", "before=1-2-3", "before=abc", f"before=1-{'00' * 32}-0"],
)
def test_a_bad_query_is_a_400_naming_it(query: str) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.get(f"/api/timeline?{query}")
        assert response.status == 400
        assert query.split("=")[0] in await response.text()

    run_client(make_box(), test)


def test_a_phone_posts_a_signed_entry_and_the_box_keeps_its_feed() -> None:
    node = make_box()

    async def test(client: TestClient[Any, Any]) -> None:
        head = await (await client.get("/api/head", params=PHONE_FEED)).json()
        assert head["latest"] == 0
        assert head["kept"] is False
        first = phone_post(1, "hello from a phone")
        response = await client.post("/api/entries", data=first, headers=OCTETS)
        assert response.status == 201, await response.text()
        assert (await response.json())["outcome"] == "added"
        again = await client.post("/api/entries", data=first, headers=OCTETS)
        assert (await again.json())["outcome"] == "held"
        head = await (await client.get("/api/head", params=PHONE_FEED)).json()
        assert head["latest"] == 1
        assert head["kept"] is True
        page = await (await client.get("/api/timeline")).json()
        by_phone = [e for e in page["entries"] if e["author"] == format_feed_id(PHONE.feed_id)]
        assert [e["text"] for e in by_phone] == ["hello from a phone"]

    woken = run_client(node, test)
    assert node.store.latest_seq(PHONE.feed_id) == 1
    assert node.scope(PHONE.feed_id) is not None
    assert woken  # the daemon is told, so the entry goes on to its peers


def test_a_forged_entry_is_rejected_with_its_reason_and_nothing_is_stored() -> None:
    node = make_box(PHONE)
    forged = bytearray(phone_post(1, "not mine"))
    forged[-1] ^= 1

    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/entries", data=bytes(forged), headers=OCTETS)
        assert response.status == 422
        body = await response.json()
        assert body["outcome"] == "rejected"
        assert "signature" in body["reason"]
        garbage = await client.post("/api/entries", data=b"\x00\x01", headers=OCTETS)
        assert garbage.status == 422

    run_client(node, test)
    assert node.store.latest_seq(PHONE.feed_id) == 0


def test_only_the_page_itself_may_change_the_box() -> None:
    entry = phone_post(1, "hi")

    async def test(client: TestClient[Any, Any]) -> None:
        other_site = {**OCTETS, "Origin": "http://evil.example"}
        assert (await client.post("/api/entries", data=entry, headers=other_site)).status == 403
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert (await client.post("/api/entries", data=entry, headers=form)).status == 415
        too_big = b"\x00" * (MAX_BODY_BYTES + 1)
        assert (await client.post("/api/entries", data=too_big, headers=OCTETS)).status == 413
        own = {**OCTETS, "Origin": f"http://{client.server.host}:{client.server.port}"}
        assert (await client.post("/api/entries", data=entry, headers=own)).status == 201

    run_client(make_box(), test)


def test_a_flood_of_posts_from_one_address_is_slowed_down() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        statuses = [
            (await client.post("/api/entries", data=b"junk", headers=OCTETS)).status
            for _ in range(POSTS_PER_MINUTE + 5)
        ]
        assert statuses[:POSTS_PER_MINUTE] == [422] * POSTS_PER_MINUTE
        assert set(statuses[POSTS_PER_MINUTE:]) == {429}

    run_client(make_box(), test)


def test_the_post_limiter_refills_and_forgets_the_oldest_clients() -> None:
    now = [0.0]
    limiter = PostLimiter(per_minute=60, clock=lambda: now[0])
    assert all(limiter.allow("a") for _ in range(60))
    assert not limiter.allow("a")
    now[0] += 1.0
    assert limiter.allow("a")
    for i in range(5000):
        limiter.allow(f"stranger {i}")
    assert len(limiter._buckets) <= 1024


def test_an_open_page_hears_of_new_entries_through_one_stream() -> None:
    node = make_box()

    async def test(client: TestClient[Any, Any]) -> None:
        streams = [await client.get("/api/events") for _ in range(3)]
        for stream in streams:
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
        response = await client.post("/api/entries", data=phone_post(1, "live"), headers=OCTETS)
        assert response.status == 201
        for stream in streams:
            event = await stream.content.readuntil(b"\n\n")
            assert event.startswith(b"event: entries\ndata: ")
            data = json.loads(event.split(b"data: ", 1)[1])
            assert data["feeds"][format_feed_id(PHONE.feed_id)] == 1
            stream.close()

    run_client(node, test)


def test_the_hub_is_bounded_and_drops_a_phone_that_cannot_keep_up() -> None:
    async def main() -> None:
        hub = Hub()
        slow, fast = hub.open(), hub.open()
        for seq in range(1, STREAM_QUEUE_EVENTS + 2):
            hub.entry_stored(ALICE.feed_id, seq, None)
            hub.flush()
            fast.get_nowait()
        assert len(hub) == 1  # the slow one is gone, and told so
        assert slow.get_nowait() is None
        streams = [hub.open() for _ in range(MAX_STREAMS - 1)]
        with pytest.raises(StreamsFull):
            hub.open()
        hub.close_all()
        assert all(q.get_nowait() is None for q in streams)

    asyncio.run(main())


def test_head_of_a_feed_names_its_latest_entry_so_a_phone_never_forks() -> None:
    node = make_box(PHONE)
    chain = make_chain(PHONE, 3)
    for entry in chain:
        node.ingest(entry.raw)

    async def test(client: TestClient[Any, Any]) -> None:
        head = await (await client.get("/api/head", params=PHONE_FEED)).json()
        assert (head["first"], head["latest"]) == (1, 3)
        assert head["latest_id"] == format_msg_id(chain[-1].id)
        bad = await client.get("/api/head?feed=nobody")
        assert bad.status == 400

    run_client(node, test)


def test_one_address_brings_one_new_person_a_minute() -> None:
    other = identity(9)
    second = create_entry(
        other,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=TS_MS,
        content_type=ContentType.POST,
        content=b"me too",
    ).raw

    async def test(client: TestClient[Any, Any]) -> None:
        first = await client.post("/api/entries", data=phone_post(1, "hi"), headers=OCTETS)
        assert first.status == 201
        response = await client.post("/api/entries", data=second, headers=OCTETS)
        assert response.status == 429
        assert "one new person a minute" in await response.text()

    node = make_box()
    run_client(node, test)
    assert node.store.latest_seq(other.feed_id) == 0


def test_the_page_goes_compressed_and_is_not_sent_again_unchanged() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        zipped = await client.get("/static/codec.js", headers={"Accept-Encoding": "gzip"})
        assert zipped.status == 200
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.headers["Content-Type"].startswith("text/javascript")
        assert "export function createEntry" in await zipped.text()
        plain = await client.get("/static/codec.js", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers
        etag = plain.headers["ETag"]
        again = await client.get("/static/codec.js", headers={"If-None-Match": etag})
        assert again.status == 304

    run_client(make_box(), test)


def test_people_shows_names_and_what_a_phone_follows() -> None:
    node = make_box(ALICE, PHONE, posts=3)
    alice_chain = make_chain(ALICE, 3)
    about = create_entry(
        ALICE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(4),
        previous=alice_chain[-1].id,
        timestamp_ms=TS_MS,
        content_type=ContentType.ABOUT,
        content=encode_about(About(name="Alice", description="baker")),
    )
    assert node.ingest(about.raw).outcome.value == "added"
    phone_chain = make_chain(PHONE, 3)
    follow_alice = create_entry(
        PHONE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(4),
        previous=phone_chain[-1].id,
        timestamp_ms=TS_MS,
        content_type=ContentType.CONTACT,
        content=encode_contact(Contact(action=ContactAction.FOLLOW, target=ALICE.feed_id)),
    )
    assert node.ingest(follow_alice.raw).outcome.value == "added"

    async def test(client: TestClient[Any, Any]) -> None:
        listed = (await (await client.get("/api/people", params=PHONE_FEED)).json())["people"]
        by_id = {p["id"]: p for p in listed}
        alice = by_id[format_feed_id(ALICE.feed_id)]
        assert (alice["name"], alice["description"], alice["latest"]) == ("Alice", "baker", 4)
        assert (alice["followed"], alice["blocked"]) == (True, False)
        assert by_id[format_feed_id(PHONE.feed_id)]["name"] is None
        assert by_id[format_feed_id(BOX.feed_id)]["box"] is True
        anonymous = (await (await client.get("/api/people")).json())["people"]
        assert not any(p["followed"] for p in anonymous)

    run_client(node, test)


def test_a_forged_or_hidden_newcomer_is_not_kept() -> None:
    forged = bytearray(phone_post(1, "let me in"))
    forged[-1] ^= 1
    node = make_box()

    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/entries", data=bytes(forged), headers=OCTETS)
        assert response.status == 422
        assert "signature" in (await response.json())["reason"]
        node.set_contact(ContactAction.BLOCK, PHONE.feed_id, timestamp_ms=TS_MS)
        hidden = await client.post("/api/entries", data=phone_post(1, "hi"), headers=OCTETS)
        assert hidden.status == 403

    run_client(node, test)
    assert node.scope(PHONE.feed_id) is None  # never followed: neither forged nor hidden
    assert PHONE.feed_id in node.policy.graph.blocks[BOX.feed_id]


def _reply(who: Identity, seq: int, previous: MsgId | None, parent: MsgId, text: str) -> bytes:
    return create_entry(
        who,
        DEFAULT_NETWORK_KEY,
        seq=Seq(seq),
        previous=previous,
        timestamp_ms=TS_MS + 100 + seq,
        content_type=ContentType.REPLY,
        content=encode_reply(Reply(parent=parent, text=text)),
    ).raw


def test_a_thread_holds_a_post_and_its_replies_and_the_timeline_counts_them() -> None:
    node = make_box(ALICE, BOB, posts=2)
    alice_first = make_chain(ALICE, 2)[0]
    bob_head = make_chain(BOB, 2)[-1].id
    answer = _reply(BOB, 3, bob_head, alice_first.id, "yes")

    async def test(client: TestClient[Any, Any]) -> None:
        assert node.ingest(answer).entry is not None
        root = format_msg_id(alice_first.id)
        got = await client.get("/api/thread", params={"id": root})
        assert got.status == 200
        body = await got.json()
        assert body["root"] == root
        assert [e.get("text") for e in body["entries"]][1:] == ["yes"]
        reply_id = body["entries"][1]["id"]
        from_reply = await (await client.get("/api/thread", params={"id": reply_id})).json()
        assert from_reply == body
        line = await (await client.get("/api/timeline")).json()
        counts = {e["id"]: e.get("replies") for e in line["entries"]}
        assert counts[root] == 1
        missing = format_msg_id(MsgId(bytes(32)))
        assert (await client.get("/api/thread", params={"id": missing})).status == 404
        assert (await client.get("/api/thread", params={"id": "%nope"})).status == 400

    run_client(node, test)


def test_a_persons_page_names_them_and_lists_their_entries_newest_first_in_pages() -> None:
    node = make_box(ALICE, posts=5)
    about = create_entry(
        ALICE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(6),
        previous=make_chain(ALICE, 5)[-1].id,
        timestamp_ms=TS_MS + 6,
        content_type=ContentType.ABOUT,
        content=encode_about(About(name="Alice <b>", description="baker")),
    )
    assert node.ingest(about.raw).entry is not None

    async def test(client: TestClient[Any, Any]) -> None:
        feed = format_feed_id(ALICE.feed_id)
        first = await (await client.get("/api/feed", params={"feed": feed, "limit": "4"})).json()
        assert (first["name"], first["description"]) == ("Alice <b>", "baker")
        assert [e["seq"] for e in first["entries"]] == [6, 5, 4, 3]
        assert first["next"] == 3
        params = {"feed": feed, "limit": "4", "before": str(first["next"])}
        rest = await (await client.get("/api/feed", params=params)).json()
        assert [e["seq"] for e in rest["entries"]] == [2, 1]
        assert rest["next"] is None
        stranger = format_feed_id(BOB.feed_id)
        nobody = await (await client.get("/api/feed", params={"feed": stranger})).json()
        assert (nobody["entries"], nobody["kept"], nobody["name"]) == ([], False, None)
        bad = await client.get("/api/feed", params={"feed": feed, "before": "x"})
        assert bad.status == 400

    run_client(node, test)

"""The inbox's calls in-process, over real HTTP: private entries, keys and reach."""

from __future__ import annotations

import asyncio
import base64
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshnode.codec.content import (
    ContactAction,
    EncKey,
    PrivateInner,
    encode_enckey,
    encode_private_inner,
    recipient_tag,
)
from meshnode.codec.message import ContentType, create_entry, decode_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, format_msg_id
from meshnode.secure.private import enc_keypair, open_private, seal
from meshnode.types import MsgId, Seq
from meshnode.web import inbox
from meshnode.web.server import make_app
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from meshnode.codec.message import Entry
    from meshnode.secure.identity import Identity

BOX, ALICE, BOB, CAROL = identity(1), identity(3), identity(4), identity(5)
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Writer:
    """Signs the next entries of one feed."""

    who: Identity
    seq: int = 0
    previous: MsgId | None = None
    made: list[Entry] = field(default_factory=list)

    def entry(self, content_type: ContentType, content: bytes) -> Entry:
        self.seq += 1
        made = create_entry(
            self.who,
            DEFAULT_NETWORK_KEY,
            seq=Seq(self.seq),
            previous=self.previous,
            timestamp_ms=TS_MS + self.seq,
            content_type=content_type,
            content=content,
        )
        self.previous = made.id
        self.made.append(made)
        return made

    def key(self, generation: int = 0, homes: tuple[Identity, ...] = ()) -> Entry:
        pair = enc_keypair(self.who.seed, generation)
        enckey = EncKey(key=pair.public_key, generation=generation, homes=_feeds(homes))
        return self.entry(ContentType.ENCKEY, encode_enckey(enckey))

    def private(self, text: str, *to: Identity, pad: int = 0) -> Entry:
        tags = tuple(recipient_tag(r.feed_id) for r in to)
        inner = PrivateInner(
            content_type=ContentType.POST, recipient_tags=tags, payload=text.encode() + bytes(pad)
        )
        pks = [enc_keypair(r.seed).public_key for r in to]
        sealed = seal(encode_private_inner(inner), pks, enc_keypair(self.who.seed).secret_key)
        return self.entry(ContentType.PRIVATE, sealed)

    def post(self, text: str) -> Entry:
        return self.entry(ContentType.POST, text.encode())


def _feeds(who: tuple[Identity, ...]) -> tuple[Any, ...]:
    return tuple(w.feed_id for w in who)


def make_box(*authors: Identity) -> Node:
    node = Node(BOX, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))
    for author in authors:
        node.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=TS_MS)
    return node


def store(node: Node, *entries: Entry) -> None:
    for entry in entries:
        assert node.ingest(entry.raw).entry is not None


def run_client(node: Node, test: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        app, _ = make_app(node, box_name="Village", on_change=lambda: None)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 20)

    asyncio.run(main())


async def _json(client: TestClient[Any, Any], url: str) -> Any:
    response = await client.get(url)
    assert response.status == 200, await response.text()
    return await response.json()


def test_every_private_entry_is_listed_in_the_order_the_box_got_it_with_its_bytes() -> None:
    alice, bob = Writer(ALICE), Writer(BOB)
    node = make_box(ALICE, BOB)
    store(node, alice.post("public"), alice.private("to bob", BOB), bob.key())
    store(node, bob.private("to alice", ALICE), alice.private("to bob and carol", BOB, CAROL))

    a, b = format_feed_id(ALICE.feed_id), format_feed_id(BOB.feed_id)

    async def test(client: TestClient[Any, Any]) -> None:
        page = await _json(client, "/api/private")
        # What the store held at start is listed feed by feed, each feed in seq order.
        assert sorted((e["author"], e["seq"]) for e in page["entries"]) == sorted(
            [(a, 2), (b, 2), (a, 3)]
        )
        assert [e["seq"] for e in page["entries"] if e["author"] == a] == [2, 3]
        assert page["more"] is False
        assert page["restarted"] is False
        first = next(e for e in page["entries"] if e["author"] == a)
        raw = base64.b64decode(first["raw"])
        assert raw == alice.made[1].raw
        assert first["id"] == format_msg_id(decode_entry(raw).id)
        assert first["timestamp"] == TS_MS + 2
        # Bob opens what is his, and only that, from the bytes alone.
        mine = []
        for listed in page["entries"]:
            content = decode_entry(base64.b64decode(listed["raw"])).content
            try:
                mine.append(open_private(content, enc_keypair(BOB.seed).secret_key)[0])
            except ValueError:
                continue
        assert len(mine) == 3  # his own (as author) and the two to him

        # After the cursor: nothing, then only what the box stores next.
        later = await _json(client, f"/api/private?after={page['next']}")
        assert later["entries"] == []
        store(node, bob.private("one more", ALICE), alice.private("and another", BOB))
        store(node, bob.private("and the last", ALICE))
        later = await _json(client, f"/api/private?after={later['next']}")
        assert [(e["author"], e["seq"]) for e in later["entries"]] == [(b, 3), (a, 4), (b, 4)]

    run_client(node, test)


def test_pages_are_bounded_by_count_and_bytes_and_walk_every_entry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = Writer(ALICE)
    node = make_box(ALICE)
    for i in range(12):
        store(node, alice.private(f"big {i}", BOB, pad=7000))  # about 7.2 KB each

    async def test(client: TestClient[Any, Any]) -> None:
        seen: list[int] = []
        url = "/api/private?limit=5"
        while True:
            page = await _json(client, url)
            assert len(page["entries"]) <= 5
            seen += [e["seq"] for e in page["entries"]]
            if not page["more"]:
                break
            url = f"/api/private?limit=5&after={page['next']}"
        assert seen == list(range(1, 13))

    run_client(node, test)
    monkeypatch.setattr(inbox, "MAX_PAGE_BYTES", 20_000)  # three such entries overfill it

    async def by_bytes(client: TestClient[Any, Any]) -> None:
        page = await _json(client, "/api/private?limit=500")
        assert len(page["entries"]) == 2
        assert page["more"] is True

    run_client(node, by_bytes)


def test_a_cursor_of_another_start_begins_again_and_a_bad_one_is_a_400() -> None:
    alice = Writer(ALICE)
    node = make_box(ALICE)
    store(node, alice.private("hello", BOB))

    async def test(client: TestClient[Any, Any]) -> None:
        page = await _json(client, "/api/private?after=0000dead.7")
        assert page["restarted"] is True
        assert [e["seq"] for e in page["entries"]] == [1]
        generation = page["next"].partition(".")[0]
        for query in ("after=" + generation + ".x", "after=" + generation + ".", "limit=0"):
            response = await client.get(f"/api/private?{query}")
            assert response.status == 400, query
        response = await client.get("/api/private?limit=501")
        assert response.status == 400
        assert response.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]

    run_client(node, test)


def test_the_index_forgets_the_oldest_beyond_its_limit() -> None:
    index = inbox.PrivateIndex(limit=8)
    alice = Writer(ALICE)
    for i in range(20):
        index.add(alice.private(str(i), BOB))
        index.add(alice.made[-1])  # a second sight of an entry is not a second entry
    assert 8 <= len(index) <= 9
    listed = index.after(0)
    assert [seq for _, _, seq in listed] == list(range(21 - len(index), 21))
    assert [n for n, _, _ in index.after(listed[-2][0])] == [listed[-1][0]]


def test_keys_are_each_feeds_latest_with_generation_and_homes() -> None:
    alice, bob, carol = Writer(ALICE), Writer(BOB), Writer(CAROL)
    node = make_box(ALICE, BOB, CAROL)
    store(node, alice.key(homes=(BOX,)), alice.post("hi"), alice.key(1, homes=(BOX, BOB)))
    store(node, bob.key(), carol.post("no key"))

    async def test(client: TestClient[Any, Any]) -> None:
        listed = (await _json(client, "/api/keys"))["keys"]
        by_feed = {k["feed"]: k for k in listed}
        assert set(by_feed) == {format_feed_id(ALICE.feed_id), format_feed_id(BOB.feed_id)}
        a = by_feed[format_feed_id(ALICE.feed_id)]
        assert a == {
            "feed": format_feed_id(ALICE.feed_id),
            "seq": 3,
            "key": base64.b64encode(enc_keypair(ALICE.seed, 1).public_key).decode(),
            "generation": 1,
            "homes": [format_feed_id(BOX.feed_id), format_feed_id(BOB.feed_id)],
        }
        one = await _json(client, f"/api/keys?feed={format_feed_id(BOB.feed_id)}")
        assert [k["feed"] for k in one["keys"]] == [format_feed_id(BOB.feed_id)]
        none = await _json(client, f"/api/keys?feed={format_feed_id(CAROL.feed_id)}")
        assert none["keys"] == []
        first = await _json(client, "/api/keys?limit=1")
        rest = await _json(client, f"/api/keys?limit=1&after={first['next']}")
        assert rest["next"] is None
        assert {k["feed"] for k in first["keys"] + rest["keys"]} == set(by_feed)
        assert (await client.get("/api/keys?feed=nope")).status == 400

    run_client(node, test)


def test_a_phone_posts_its_key_and_a_private_entry_through_the_usual_path() -> None:
    phone = Writer(identity(9))
    node = make_box()

    async def test(client: TestClient[Any, Any]) -> None:
        for made in (phone.key(homes=(BOX,)), phone.private("psst", ALICE)):
            response = await client.post("/api/entries", data=made.raw, headers=OCTETS)
            assert response.status == 201, await response.text()
        listed = (await _json(client, "/api/private"))["entries"]
        assert [e["seq"] for e in listed] == [2]
        keys = (await _json(client, "/api/keys"))["keys"]
        assert [k["homes"] for k in keys] == [[format_feed_id(BOX.feed_id)]]

    run_client(node, test)


@pytest.mark.parametrize("query", ["", "feed=", "feed=@abc.ed25519"])
def test_reach_needs_a_feed(query: str) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        assert (await client.get(f"/api/reach?{query}")).status == 400

    run_client(make_box(), test)


def test_reach_says_how_far_each_known_box_holds_a_feed() -> None:
    alice = Writer(ALICE)
    node = make_box(ALICE)
    store(node, alice.post("one"), alice.private("two", BOB))

    async def test(client: TestClient[Any, Any]) -> None:
        answer = await _json(client, f"/api/reach?feed={format_feed_id(ALICE.feed_id)}")
        assert answer["feed"] == format_feed_id(ALICE.feed_id)
        assert {"box": format_feed_id(BOX.feed_id), "seq": 2} in answer["boxes"]

    run_client(node, test)

"""CLI/daemon requests (ops.HANDLERS, ops.STREAMS) on a node over the memory store."""

from __future__ import annotations

import base64
import random
from typing import TYPE_CHECKING

import pytest

from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType, create_entry
from meshnode.core.feed import Outcome
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import ops
from meshnode.daemon.control import LocalAccess
from meshnode.host.jobs import run_inline
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, format_msg_id
from meshnode.types import Seq
from meshnode.usb.drive import init_drive
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from meshnode.codec.message import Entry
    from meshnode.secure.identity import Identity

ME, ALICE, STRANGER = identity(1), identity(2), identity(9)
ME_TEXT, ALICE_TEXT = format_feed_id(ME.feed_id), format_feed_id(ALICE.feed_id)


def make_node() -> Node:
    return Node(ME, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))


def call(node: Node, cmd: str, **args: object) -> dict[str, object]:
    return ops.HANDLERS[cmd](node, args)


def stream(node: Node, cmd: str, **args: object) -> list[dict[str, object]]:
    return list(run_inline(ops.STREAMS[cmd](node, args)))


def texts(node: Node, who: Identity = ME) -> list[bytes]:
    return [e.plain_content() for e in node.iter_feed(who.feed_id)]


def test_tables_hold_the_commands() -> None:
    assert set(ops.HANDLERS) >= {"post", "post_many", "contact", "status"}
    assert set(ops.STREAMS) == {"feed", "usb_sync"}


# -- post ----------------------------------------------------------------------------------


def test_post_returns_its_ref_and_stores_the_entry() -> None:
    node = make_node()
    first = call(node, "post", text="hello")
    second = call(node, "post", text="again")
    stored = [node.store.get(ME.feed_id, Seq(1)), node.store.get(ME.feed_id, Seq(2))]
    entries = list(node.iter_feed(ME.feed_id))
    assert [e.raw for e in entries] == stored
    assert first == {"id": format_msg_id(entries[0].id), "author": ME_TEXT, "seq": 1}
    assert second == {"id": format_msg_id(entries[1].id), "author": ME_TEXT, "seq": 2}
    assert texts(node) == [b"hello", b"again"]
    assert entries[0].content_type == ContentType.POST


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_empty_post_is_refused(text: str) -> None:
    node = make_node()
    with pytest.raises(ops.PostError, match=r"^nothing to post: the text is empty$"):
        call(node, "post", text=text)
    assert node.store.head(ME.feed_id) is None


def test_too_long_post_is_refused() -> None:
    node = make_node()
    call(node, "post", text="x" * 8192)  # exactly the limit is fine
    with pytest.raises(ops.PostError, match=r"^content is 8194 bytes, limit is 8192$"):
        call(node, "post", text="\u00e9" * 4097)  # 4097 characters, 8194 UTF-8 bytes
    assert node.store.latest_seq(ME.feed_id) == 1


def test_post_on_a_forked_feed_is_a_post_error() -> None:
    node = make_node()
    call(node, "post", text="one")
    twin = create_entry(
        ME,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=TS_MS,
        content_type=ContentType.POST,
        content=b"the same key, used elsewhere",
    )
    assert node.ingest(twin.raw).outcome is Outcome.FORKED
    with pytest.raises(ops.PostError, match="forked"):
        call(node, "post", text="two")


@pytest.mark.parametrize("args", [{}, {"text": None}, {"text": 5}, {"text": b"hi"}])
def test_post_needs_a_text_string(args: Mapping[str, object]) -> None:
    with pytest.raises(ops.RequestError, match=r"^argument 'text' must be a string$"):
        ops.HANDLERS["post"](make_node(), args)


# -- post_many ---------------------------------------------------------------------------


def test_post_many_posts_all() -> None:
    node = make_node()
    result = call(node, "post_many", texts=["a", "b", "c"])
    assert result == {"posted": 3, "error": None, "failed_index": None}
    assert texts(node) == [b"a", b"b", b"c"]


def test_post_many_of_nothing() -> None:
    node = make_node()
    assert call(node, "post_many", texts=[]) == {"posted": 0, "error": None, "failed_index": None}
    assert node.store.head(ME.feed_id) is None


def test_post_many_stops_at_the_first_failure() -> None:
    node = make_node()
    result = call(node, "post_many", texts=["a", "b", " ", "c", "y" * 9000])
    assert result == {
        "posted": 2,
        "error": "nothing to post: the text is empty",
        "failed_index": 2,
    }
    assert texts(node) == [b"a", b"b"]


def test_post_many_reports_a_too_long_text() -> None:
    node = make_node()
    result = call(node, "post_many", texts=["a", "y" * 9000, "c"])
    assert result == {
        "posted": 1,
        "error": "content is 9000 bytes, limit is 8192",
        "failed_index": 1,
    }
    assert texts(node) == [b"a"]


@pytest.mark.parametrize(
    "args", [{}, {"texts": "abc"}, {"texts": ["a", 1]}, {"texts": ("a",)}, {"texts": None}]
)
def test_post_many_needs_a_list_of_strings(args: Mapping[str, object]) -> None:
    node = make_node()
    with pytest.raises(ops.RequestError, match=r"^argument 'texts' must be a list of strings$"):
        ops.HANDLERS["post_many"](node, args)
    assert node.store.head(ME.feed_id) is None


# -- contact -------------------------------------------------------------------------------


def test_follow_then_follow_again_changes_nothing() -> None:
    node = make_node()
    first = call(node, "contact", action="follow", target=ALICE_TEXT)
    entry = next(node.iter_feed(ME.feed_id))
    assert first == {
        "changed": True,
        "id": format_msg_id(entry.id),
        "author": ME_TEXT,
        "seq": 1,
    }
    assert entry.content_type == ContentType.CONTACT
    assert node.hops(ALICE.feed_id) == 1
    again = call(node, "contact", action="FOLLOW", target=ALICE_TEXT)
    assert again == {"changed": False, "target": ALICE_TEXT}
    assert node.store.latest_seq(ME.feed_id) == 1


def test_unfollow_block_unblock() -> None:
    node = make_node()
    assert call(node, "contact", action="unfollow", target=ALICE_TEXT)["changed"] is False
    assert call(node, "contact", action="follow", target=ALICE_TEXT)["seq"] == 1
    assert call(node, "contact", action="unfollow", target=ALICE_TEXT)["seq"] == 2
    assert call(node, "contact", action="block", target=ALICE_TEXT)["seq"] == 3
    assert call(node, "contact", action="block", target=ALICE_TEXT)["changed"] is False
    assert call(node, "contact", action="unblock", target=ALICE_TEXT)["seq"] == 4
    assert node.store.latest_seq(ME.feed_id) == 4


def test_target_without_the_at_sign() -> None:
    node = make_node()
    result = call(node, "contact", action="follow", target=ALICE_TEXT[1:])
    assert result["changed"] is True
    assert node.hops(ALICE.feed_id) == 1


def test_contact_on_own_feed_is_refused() -> None:
    node = make_node()
    with pytest.raises(ops.PostError) as info:
        call(node, "contact", action="follow", target=ME_TEXT)
    assert str(info.value) == f"{ME_TEXT} is this node's own feed"
    assert node.store.head(ME.feed_id) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"target": ALICE_TEXT}, "argument 'action' must be a string"),
        ({"action": 1, "target": ALICE_TEXT}, "argument 'action' must be a string"),
        (
            {"action": "like", "target": ALICE_TEXT},
            "argument 'action' must be follow, unfollow, block or unblock",
        ),
        ({"action": "follow"}, "argument 'target' must be a string"),
        ({"action": "follow", "target": ALICE.feed_id}, "argument 'target' must be a string"),
        ({"action": "follow", "target": "@bob"}, "argument 'target': not a feed id"),
        ({"action": "follow", "target": "@AAAA.ed25519"}, "argument 'target': feed id must"),
    ],
)
def test_contact_bad_arguments(args: Mapping[str, object], message: str) -> None:
    node = make_node()
    with pytest.raises(ops.RequestError) as info:
        ops.HANDLERS["contact"](node, args)
    assert str(info.value).startswith(message)
    assert node.store.head(ME.feed_id) is None


# -- status ---------------------------------------------------------------------------------


def test_status_is_the_nodes_status() -> None:
    node = make_node()
    call(node, "post", text="one")
    result = call(node, "status")
    assert result == node.status()
    assert result["id"] == ME_TEXT
    assert result["entries"] == 1


# -- feed stream -------------------------------------------------------------------------


def publish_three(node: Node) -> list[Entry]:
    return [
        node.post("one", timestamp_ms=TS_MS),
        node.set_contact(ContactAction.FOLLOW, ALICE.feed_id, timestamp_ms=TS_MS + 1),
        node.publish(ContentType.RAW, b"\x00\xff", timestamp_ms=TS_MS + 2),
    ]


def expected_json(entries: list[Entry]) -> list[dict[str, object]]:
    common = [
        {"author": ME_TEXT, "seq": e.seq, "id": format_msg_id(e.id), "timestamp": TS_MS + i}
        for i, e in enumerate(entries)
    ]
    extra: list[dict[str, object]] = [
        {"type": "post", "text": "one"},
        {"type": "contact", "contact": {"action": "follow", "target": ALICE_TEXT}},
        {"type": "raw", "content_b64": base64.b64encode(b"\x00\xff").decode()},
    ]
    return [{**c, **x} for c, x in zip(common, extra, strict=True)]


def test_feed_stream_yields_entries_in_order() -> None:
    node = make_node()
    expected = expected_json(publish_three(node))
    assert stream(node, "feed") == expected
    assert stream(node, "feed", feed=ME_TEXT) == expected
    assert stream(node, "feed", feed=None) == expected
    assert [ops.entry_json(e) for e in node.iter_feed(ME.feed_id)] == expected


@pytest.mark.parametrize(
    ("since", "limit", "seqs"),
    [
        (0, None, [1, 2, 3]),
        (1, None, [2, 3]),
        (3, None, []),
        (10, None, []),
        (0, 1, [1]),
        (1, 1, [2]),
        (0, 0, []),
        (2, 5, [3]),
    ],
)
def test_feed_stream_since_and_limit(since: int, limit: int | None, seqs: list[int]) -> None:
    node = make_node()
    publish_three(node)
    items = stream(node, "feed", since=since, limit=limit)
    assert [item["seq"] for item in items] == seqs


def test_feed_stream_of_an_unknown_feed() -> None:
    stranger = format_feed_id(STRANGER.feed_id)
    assert stream(make_node(), "feed", feed=stranger) == [{"missing": stranger}]
    assert stream(make_node(), "feed") == [{"missing": ME_TEXT}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"feed": 5}, "argument 'feed' must be a string"),
        ({"feed": "@nobody"}, "argument 'feed': not a feed id"),
        ({"since": -1}, "argument 'since' must be an integer >= 0"),
        ({"since": "1"}, "argument 'since' must be an integer >= 0"),
        ({"since": True}, "argument 'since' must be an integer >= 0"),
        ({"limit": -1}, "argument 'limit' must be an integer >= 0"),
        ({"limit": 1.0}, "argument 'limit' must be an integer >= 0"),
    ],
)
def test_feed_stream_bad_arguments(args: Mapping[str, object], message: str) -> None:
    node = make_node()
    publish_three(node)
    with pytest.raises(ops.RequestError) as info:
        list(ops.STREAMS["feed"](node, args))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("args", [{}, {"path": 5}, {"path": "relative/stick"}])
def test_usb_sync_needs_an_absolute_path(args: Mapping[str, object]) -> None:
    with pytest.raises(ops.RequestError, match="argument 'path' must be the drive's absolute"):
        list(ops.STREAMS["usb_sync"](make_node(), args))


# -- LocalAccess ----------------------------------------------------------------------------


def test_local_access_runs_a_streams_jobs_in_place(tmp_path: Path) -> None:
    node = make_node()
    node.post("carried", timestamp_ms=0)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 1 << 20)
    items = list(LocalAccess(node).stream("usb_sync", path=str(tmp_path)))
    assert all(isinstance(item, dict) for item in items)
    summary = items[-1]["summary"]
    assert isinstance(summary, dict)
    assert summary["to_drive"] == 1


def test_local_access_runs_ops() -> None:
    node = make_node()
    access = LocalAccess(node)
    assert access.remote is False
    assert access.call("post", text="hi")["seq"] == 1
    assert [item["text"] for item in access.stream("feed")] == ["hi"]


@pytest.mark.parametrize("cmd", ["peers", "nonsense"])
def test_local_access_unknown_command_needs_the_daemon(cmd: str) -> None:
    with pytest.raises(ops.RequestError) as info:
        LocalAccess(make_node()).call(cmd)
    assert str(info.value) == f"{cmd} needs the daemon (meshnode run)"


def test_post_many_refuses_more_than_one_batch_and_posts_nothing() -> None:
    node = make_node()
    with pytest.raises(ops.RequestError, match="more than 1000 posts"):
        call(node, "post_many", texts=["x"] * (ops.MAX_POSTS_PER_REQUEST + 1))
    assert node.store.head(ME.feed_id) is None
    assert call(node, "post_many", texts=["x"] * ops.MAX_POSTS_PER_REQUEST)["posted"] == 1000

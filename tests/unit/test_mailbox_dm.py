"""dm, inbox and keys as control requests, on a node in memory and a pins file in tmp_path."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.codec.content import About, ContactAction, encode_about
from meshnode.codec.message import ContentType
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon.control import LocalAccess
from meshnode.daemon.ops import PostError
from meshnode.daemon.private_ops import private_requests, publish_own_enckey
from meshnode.host.keypins import KEYPINS_NAME
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from pathlib import Path


def make(n: int) -> Node:
    return Node(
        identity(n), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(n)
    )


def hand_over(source: Node, target: Node) -> None:
    for entry in source.iter_feed(source.feed_id):
        target.ingest(entry.raw)


def world(tmp_path: Path, people: int = 8) -> tuple[LocalAccess, Node, list[Node]]:
    me = make(1)
    others = [make(10 + i) for i in range(people)]
    for i, other in enumerate(others):
        name = "twin" if i >= people - 2 else f"person {i}"
        other.publish(ContentType.ABOUT, encode_about(About(name=name)), timestamp_ms=TS_MS)
        publish_own_enckey(other)
        me.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS_MS)
        other.set_contact(ContactAction.FOLLOW, me.feed_id, timestamp_ms=TS_MS)
        hand_over(other, me)
    return LocalAccess(me, private_requests(tmp_path)), me, others


def test_dm_to_seven_by_name_and_id_and_each_reads_it(tmp_path: Path) -> None:
    access, me, others = world(tmp_path)
    to = ["Person 0", *(format_feed_id(o.feed_id) for o in others[1:7])]
    ref: Any = access.call("dm", to=to, text="to seven")
    assert ref["recipients"] == [format_feed_id(o.feed_id) for o in others[:7]]
    assert ref["fits_one_lora_frame"] is False
    assert (tmp_path / KEYPINS_NAME).stat().st_mode & 0o777 == 0o600
    for other in others[:7]:
        hand_over(me, other)
        mine = LocalAccess(other, private_requests(tmp_path / "x"))
        [item] = [i for i in mine.stream("inbox") if "inbox" in i]
        inbox: Any = item["inbox"]
        [conversation] = inbox["conversations"]
        assert conversation["messages"][0]["text"] == "to seven"
    outsider = others[7]
    hand_over(me, outsider)
    items = list(LocalAccess(outsider, private_requests(tmp_path / "y")).stream("inbox"))
    assert items[-1] == {"inbox": {"conversations": [], "older": 0}}


def test_one_recipient_and_fifty_bytes_fit_one_lora_frame(tmp_path: Path) -> None:
    access, _, others = world(tmp_path)
    ref: Any = access.call("dm", to=[format_feed_id(others[0].feed_id)], text="x" * 50)
    assert ref["short_bytes"] <= 239
    assert ref["fits_one_lora_frame"] is True
    assert ref["published_key"] is True  # our own key goes out with our first message
    again: Any = access.call("dm", to=[format_feed_id(others[0].feed_id)], text="again")
    assert again["published_key"] is False


@pytest.mark.parametrize(
    ("to", "text", "error"),
    [
        (["twin"], "hi", "2 people have that name"),
        (["nobody"], "hi", "no one held has that name"),
        (["person 0"], "  ", "the text is empty"),
        ([], "hi", "1 to 7 recipients"),
        (
            [f"person {i}" for i in range(6)] + ["@" + "A" * 43 + "=.ed25519"] * 2,
            "hi",
            "no encryption key",
        ),
    ],
)
def test_dm_refuses_with_a_reason(tmp_path: Path, to: list[str], text: str, error: str) -> None:
    access, me, _ = world(tmp_path)
    before = me.store.latest_seq(me.feed_id)
    with pytest.raises(PostError, match=error):
        access.call("dm", to=to, text=text)
    assert me.store.latest_seq(me.feed_id) == before


def test_dm_to_ourselves_or_more_than_seven_is_refused(tmp_path: Path) -> None:
    access, me, others = world(tmp_path)
    with pytest.raises(PostError, match="for others"):
        access.call("dm", to=[format_feed_id(me.feed_id)], text="hi")
    with pytest.raises(PostError, match="1 to 7 recipients"):
        access.call("dm", to=[format_feed_id(o.feed_id) for o in others], text="hi")

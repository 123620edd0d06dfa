"""A slow cable: the sender does not send again what is on its way, the receiver does not ask."""

from __future__ import annotations

import random

from meshnode.codec.channel import (
    EntryMessage,
    Want,
    channel_tag,
    decode_message,
    encode_have,
    encode_want,
)
from meshnode.codec.content import ContactAction
from meshnode.core.channel import Channel, ChannelConfig
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity

_FRAME_S = 1.5  # a 180-byte entry at 1200 baud
_CONFIG = ChannelConfig.for_link(frame_s=_FRAME_S, mtu_bytes=1000, cable=True)


def _node(i: int) -> Node:
    who = Identity(bytes([0x60 + i]) * 32)
    return Node(who, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(i))


def _author(entries: int) -> tuple[Node, Channel]:
    node = _node(0)
    for k in range(entries):
        node.post(f"entry {k}".ljust(100, "."), timestamp_ms=1_700_000_000_000 + k)
    channel = Channel(node, config=_CONFIG, rng=random.Random(1))
    channel.start(0.0)
    return node, channel


def _want(node: Node, seq: int) -> bytes:
    return encode_want(b"BBBB", [(channel_tag(node.feed_id, node.network_key), seq, seq == 1)])


def _sent_seqs(channel: Channel, start_s: float, end_s: float) -> list[int]:
    """The entries ``channel`` sends, polled one frame time apart (a paced wire)."""
    seqs, now = [], start_s
    while now < end_s:
        tx = channel.poll_transmit(now, control_ok=False, data_ok=True)
        if tx is not None:
            message = decode_message(tx.message)
            assert isinstance(message, EntryMessage)
            seqs.append(message.seq)
        now += _FRAME_S
    return seqs


def test_a_want_made_before_the_entries_arrived_does_not_send_them_again() -> None:
    node, a = _author(6)
    a.receive(_want(node, 1), 0.0)
    assert _sent_seqs(a, 1.0, 4.0) == [1, 2]  # sent at 1.0 and 2.5, on their way
    a.receive(_want(node, 1), 3.5)  # made before entry 1 reached the asker
    assert _sent_seqs(a, 4.0, 12.0) == [3, 4, 5, 6]


def test_an_entry_lost_is_sent_again_alone() -> None:
    node, a = _author(6)
    a.receive(_want(node, 1), 0.0)
    assert _sent_seqs(a, 1.0, 10.0) == [1, 2, 3, 4, 5, 6]
    a.receive(_want(node, 3), 12.0)  # 3 was lost; 4 to 6 wait at the asker for it
    assert _sent_seqs(a, 13.0, 30.0) == [3]
    a.receive(_want(node, 5), 40.0)  # 5 was lost too
    assert _sent_seqs(a, 41.0, 50.0) == [5]


def test_the_receiver_does_not_ask_while_entries_arrive_in_order() -> None:
    author, sender = _author(20)
    follower = _node(1)
    follower.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=1)
    b = Channel(follower, config=_CONFIG, rng=random.Random(2))
    b.start(0.0)
    wants, now, step = 0, 0.0, 0.1
    wire_free_at = 0.0
    arriving: list[tuple[float, bytes]] = []  # entries on the wire: (arrival time, message)
    while now < 60.0 and follower.store.latest_seq(author.feed_id) < 20:
        for at, message in [m for m in arriving if m[0] <= now]:
            arriving.remove((at, message))
            b.receive(message, now)
        b.handle_timer(now)
        tx = b.poll_transmit(now, control_ok=True, data_ok=True)
        if tx is not None and isinstance(decode_message(tx.message), Want):
            wants += 1
            sender.receive(tx.message, now)
        if now >= wire_free_at:  # the sender is asked for the next entry when the wire is free
            sent = sender.poll_transmit(now, control_ok=False, data_ok=True)
            if sent is not None:
                wire_free_at = now + _FRAME_S
                arriving.append((wire_free_at, sent.message))
        now += step
    assert follower.store.latest_seq(author.feed_id) == 20
    assert wants == 1
    assert sender.stats.entries_sent == 20


def test_control_goes_on_the_wire_before_entries_due_at_the_same_time() -> None:
    node, a = _author(6)
    other = _node(2)
    node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=1)
    a.receive(_want(node, 1), 0.1)  # B asks for A's entries: an entry is due after a backoff
    # C says it holds news that A follows: A's WANT is due too (and A's first beacon).
    a.receive(encode_have(b"CCCC", [(channel_tag(other.feed_id, other.network_key), 3)]), 0.2)
    now, kinds = 10.0, []
    for _ in range(4):
        tx = a.poll_transmit(now, control_ok=True, data_ok=True)
        assert tx is not None
        kinds.append(type(decode_message(tx.message)).__name__)
    assert "Want" in kinds
    first_entry = kinds.index("EntryMessage")
    assert first_entry >= 1
    assert "EntryMessage" not in kinds[:first_entry]
    assert all(kind == "EntryMessage" for kind in kinds[first_entry:])


def test_an_entry_sent_again_does_not_bring_again_those_sent_after_its_first_sending() -> None:
    node, a = _author(12)
    a.receive(_want(node, 1), 0.0)
    assert _sent_seqs(a, 1.0, 20.0) == list(range(1, 13))
    a.receive(_want(node, 2), 20.0)  # 2 was lost; 3 to 12 wait at the asker
    assert _sent_seqs(a, 21.0, 24.0) == [2]
    a.receive(_want(node, 2), 30.0)  # lost again (a noisy line)
    assert _sent_seqs(a, 31.0, 50.0) == [2]


def test_a_mending_link_makes_an_entry_take_longer_to_be_on_its_way() -> None:
    node, a = _author(3)
    a.mending(10.0)  # each message may take up to 10 s more to arrive whole
    a.receive(_want(node, 1), 0.0)
    assert _sent_seqs(a, 1.0, 6.0) == [1, 2, 3]
    a.receive(_want(node, 1), 12.0)  # asked before the mended entry 1 came
    assert _sent_seqs(a, 13.0, 20.0) == []
    a.mending(0.0)
    a.receive(_want(node, 1), 21.0)
    assert _sent_seqs(a, 22.0, 30.0) == [1]


def _follower(author: Node) -> Channel:
    follower = _node(1)
    follower.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=1)
    b = Channel(follower, config=_CONFIG, rng=random.Random(2))
    b.start(0.0)
    return b


def _wants(channel: Channel, start_s: float, end_s: float, arriving: bool) -> int:
    count, now = 0, start_s
    while now < end_s:
        if arriving:
            channel.arriving(now)
        channel.handle_timer(now)
        tx = channel.poll_transmit(now, control_ok=True, data_ok=True)
        count += tx is not None and isinstance(decode_message(tx.message), Want)
        now += 0.1
    return count


def test_no_want_while_the_link_is_still_mending_a_message() -> None:
    author, _ = _author(2)
    assert _wants(_follower(author), 0.0, 30.0, arriving=True) == 0
    assert _wants(_follower(author), 0.0, 30.0, arriving=False) >= 1


def test_a_known_gap_is_asked_for_even_while_the_link_mends() -> None:
    author, sender = _author(3)
    b = _follower(author)
    sender.receive(_want(author, 1), 0.0)
    sent = [
        tx
        for now in (1.0, 2.5, 4.0)
        if (tx := sender.poll_transmit(now, control_ok=False, data_ok=True))
    ]
    b.receive(sent[2].message, 5.0)  # 3 arrived, 1 and 2 were lost whole
    assert _wants(b, 5.0, 15.0, arriving=True) >= 1

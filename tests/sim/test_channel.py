"""Shared-channel replication in the radio simulator: broadcast, suppression, loss, relays."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.channel import (
    Beacon,
    Want,
    channel_tag,
    clock_digest,
    decode_message,
    encode_beacon,
    encode_have,
)
from meshnode.codec.content import ContactAction
from meshnode.core.channel import Channel, ChannelConfig
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.radio.airtime import REGIONS, AirtimeBudget, LoRaParams, duty_cycle_max, time_on_air_s
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, network_tag
from meshnode.sim.radio import Air
from tests.fakes import everyone_follows

if TYPE_CHECKING:
    from collections.abc import Callable


def airtime(size: int) -> float:
    """About SF9 at 125 kHz: 0.1 s fixed, 4 ms per byte."""
    return 0.1 + size * 0.004


def all_hold(air: Air, who: list[int], author: int, count: int) -> bool:
    feed = air.node(author).feed_id
    return all(air.node(i).store.latest_seq(feed) == count for i in who)


def posts(air: Air, author: int, count: int, every_s: float = 10.0) -> None:
    for k in range(count):
        text = f"post {k} ".ljust(50, "x")
        air.at(5 + k * every_s, _poster(air, author, text))


def test_one_transmission_serves_every_listener() -> None:
    air = Air(3, airtime_s=airtime, seed=3)
    air.follow(1, 0)
    air.follow(2, 0)
    posts(air, 0, 50)
    assert air.run_until(lambda: all_hold(air, [1, 2], 0, 50), 5000)
    entries = [log for log in air.log if not log.control]
    assert len(entries) == 50  # each entry went on the air once, for both
    assert {log.sender for log in entries} == {0}
    per_receiver = sum(log.size for log in air.log) / (50 * 2)
    assert per_receiver < 90
    assert all(air.node(i).check().ok for i in range(3))


def test_a_hidden_node_gets_the_feed_through_the_middle() -> None:
    air = Air(3, airtime_s=airtime, hears={(0, 1), (1, 2)}, seed=5)  # 0 and 2 never hear
    air.follow(1, 0)
    air.follow(2, 0)
    posts(air, 0, 20)
    assert air.run_until(lambda: all_hold(air, [1, 2], 0, 20), 20000)
    relayed = [log for log in air.log if not log.control and log.sender == 1]
    assert len(relayed) >= 20  # node 2 could only hear them from node 1


def test_lost_frames_are_asked_for_again() -> None:
    air = Air(4, airtime_s=airtime, loss=0.25, seed=11)
    for i in (1, 2, 3):
        air.follow(i, 0)
    posts(air, 0, 30, every_s=5.0)
    assert air.run_until(lambda: all_hold(air, [1, 2, 3], 0, 30), 50000)
    assert all(air.node(i).check().ok for i in range(4))


def test_everyone_posting_at_once_converges_despite_collisions() -> None:
    air = Air(5, airtime_s=airtime, seed=17)
    everyone_follows(air, 5)
    for i in range(5):
        for k in range(5):
            air.at(1.0 + k, _poster(air, i, f"n{i} #{k}"))

    def converged() -> bool:
        return all(all_hold(air, list(range(5)), author, 9) for author in range(5))

    assert air.run_until(converged, 50000)  # each feed: 4 follows, then 5 posts
    # with no loss, almost every entry crosses the air once
    entries = [log for log in air.log if not log.control]
    assert len(entries) <= 1.5 * 5 * 9


def _poster(air: Air, author: int, text: str) -> Callable[[], None]:
    return lambda: air.publish(author, text)


def test_another_network_is_not_served() -> None:
    other = hashlib_key()
    me = Node(
        Identity(bytes([9]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(1),
    )
    me.post("mine", timestamp_ms=1)
    stranger = Node(
        Identity(bytes([8]) * 32), network_key=other, store=MemoryStore(), rng=random.Random(1)
    )
    a = Channel(me, config=ChannelConfig(), rng=random.Random(1))
    b = Channel(stranger, config=ChannelConfig(), rng=random.Random(2))
    a.start(0.0)
    b.start(0.0)
    for now in (1.0, 2.0, 3.0, 40.0, 80.0):
        for sender, receiver in ((a, b), (b, a)):
            tx = sender.poll_transmit(now, control_ok=True, data_ok=True)
            if tx is not None:
                receiver.receive(tx.message, now)
    assert a.status()["neighbours"] == []
    assert a.stats.entries_sent == 0


def hashlib_key() -> bytes:
    return bytes(range(32))


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_garbage_on_the_channel_is_counted_never_raised(messages: list[bytes]) -> None:
    node = Node(
        Identity(bytes([3]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(1),
    )
    channel = Channel(node, config=ChannelConfig(), rng=random.Random(4))
    channel.start(0.0)
    for i, message in enumerate(messages):
        channel.receive(message, float(i))
        channel.poll_transmit(float(i), control_ok=True, data_ok=True)
    assert node.store.stats().entries == 0


def test_a_node_with_a_backlog_waits_for_its_budget_instead_of_overrunning() -> None:
    region = REGIONS["EU868"]
    params = LoRaParams(
        frequency_hz=868_300_000, spreading_factor=9, coding_rate=5, tx_power_dbm=14
    )

    def lora_airtime(size: int) -> float:
        return time_on_air_s(params, min(255, size + 4))

    air = Air(
        3,
        airtime_s=lora_airtime,
        seed=2,
        config=ChannelConfig.for_link(frame_s=lora_airtime(251), mtu_bytes=251),
        budget=lambda: AirtimeBudget(region, control_share=0.10),
    )
    air.follow(1, 0)
    air.follow(2, 0)
    for k in range(80):  # about 56 s of airtime: more than the 36 s one hour allows
        air.publish(0, f"backlog {k} ".ljust(50, "."))
    assert air.run_until(lambda: all_hold(air, [1, 2], 0, 80), 4 * 3600)
    sent = [(log.start, log.duration_s) for log in air.log if log.sender == 0]
    assert duty_cycle_max(sent, 3600) <= 0.01 + 1e-9
    # it did wait: the last entries went out only once the first hour's airtime aged out
    entry_starts = [log.start for log in air.log if log.sender == 0 and not log.control]
    assert max(entry_starts) > 3600
    assert sum(1 for t in entry_starts if t < 3600) < 80
    # Its beacons said how long its entries were held, so the others did not keep asking.
    held_hour = [log for log in air.log if log.sender in (1, 2) and 600 < log.start < 3600]
    assert len(held_hour) <= 4


def test_a_held_beacon_defers_wants_until_news_comes() -> None:
    a, b = _node(1), _node(2)
    config = ChannelConfig(want_min_s=5.0, want_max_s=600.0, backoff_s=1.0)
    listener = Channel(b, config=config, rng=random.Random(1))
    listener.start(0.0)
    src, net = bytes(a.feed_id[:4]), bytes.fromhex(network_tag(DEFAULT_NETWORK_KEY))
    listener.receive(encode_beacon(src, net, clock_digest({}), held_s=1200), 1.0)
    deadline = listener.next_deadline()
    assert deadline is not None
    while deadline < 1200:  # only beacons may go before the holder is free again
        tx = listener.poll_transmit(deadline, control_ok=True, data_ok=True)
        assert tx is None or isinstance(decode_message(tx.message), Beacon)
        deadline = listener.next_deadline()
        assert deadline is not None
    assert deadline >= 1201
    # News from anyone (a HAVE showing more than we hold) asks at once, hold or not.
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=1)
    listener.receive(encode_have(src, [(channel_tag(a.feed_id, DEFAULT_NETWORK_KEY), 3)]), 2.0)
    assert (listener.next_deadline() or 0) < 100


def _node(i: int) -> Node:
    return Node(
        Identity(bytes([i]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(i),
    )


def test_a_node_known_to_be_behind_keeps_asking_at_a_short_interval() -> None:
    """Lost answers do not make a node that knows it is behind back off to want_max_s."""
    a, b = _node(1), _node(2)
    config = ChannelConfig(want_min_s=5.0, want_max_s=600.0, backoff_s=1.0, beacon_min_s=900.0)
    listener = Channel(b, config=config, rng=random.Random(3))
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=1)
    listener.start(0.0)
    src = bytes(a.feed_id[:4])
    listener.receive(encode_have(src, [(channel_tag(a.feed_id, DEFAULT_NETWORK_KEY), 3)]), 1.0)
    wants = []
    now = 1.0
    while now < 2000:  # every answer is lost: nothing ever arrives
        deadline = listener.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        listener.handle_timer(now)
        tx = listener.poll_transmit(now, control_ok=True, data_ok=True)
        if tx is not None and isinstance(decode_message(tx.message), Want):
            wants.append(now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(wants)]
    assert len(wants) > 40
    assert max(gaps) <= 8 * config.want_min_s + 1e-9

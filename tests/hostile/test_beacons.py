"""Forged radio beacons (and WANTs and HAVEs): a capped neighbour table, rationed resets.

A channel message is not signed: a forger in range can claim any short id, network tag,
clock digest or ``held`` time. It must not grow our memory, nor keep our Trickle timers
at their shortest interval and so spend the control airtime real neighbours need. All on
the sans-IO channel and the radio simulator's fake clock.
"""

from __future__ import annotations

import functools
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.channel import (
    MAX_HELD_S,
    channel_tag,
    encode_beacon,
    encode_have,
    encode_want,
)
from meshnode.codec.content import ContactAction
from meshnode.core.channel import Channel, ChannelConfig
from meshnode.core.memory_store import MemoryStore
from meshnode.core.neighbours import MAX_NEIGHBOURS, Neighbours
from meshnode.core.node import Node
from meshnode.radio.airtime import REGIONS, AirtimeBudget, LoRaParams, time_on_air_s
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, network_tag
from meshnode.sim.radio import Air

NET = bytes.fromhex(network_tag(DEFAULT_NETWORK_KEY))
_PARAMS = LoRaParams(frequency_hz=868_300_000, spreading_factor=9, coding_rate=5, tx_power_dbm=14)


def lora_airtime(size: int) -> float:
    return time_on_air_s(_PARAMS, min(255, size + 4))


def node(i: int) -> Node:
    return Node(
        Identity(bytes([i]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(i),
    )


def forged_beacon(rng: random.Random, *, held_s: int = 0) -> bytes:
    return encode_beacon(rng.randbytes(4), NET, rng.randbytes(4), held_s)


# -- the table --------------------------------------------------------------------------------


def test_a_flood_of_forged_beacons_keeps_the_table_at_its_cap() -> None:
    channel, friend_src = _with_a_useful_neighbour()
    rng = random.Random(7)
    for n in range(20_000):
        channel.receive(forged_beacon(rng), 10.0 + n * 0.01)
    channel.events()
    assert len(channel.neighbours) == MAX_NEIGHBOURS
    assert channel.neighbours.get(friend_src) is not None  # the useful one stayed
    assert len(channel.neighbour_ids()) <= MAX_NEIGHBOURS
    assert channel.neighbours.evicted == 20_000 + 1 - MAX_NEIGHBOURS


@pytest.mark.slow
def test_three_hundred_thousand_forged_beacons_take_no_memory_past_the_cap() -> None:
    """The attacker's trial: every forged short id was kept (300,000: +73 MiB)."""
    channel, friend_src = _with_a_useful_neighbour()
    rng = random.Random(7)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(300_000):
        channel.receive(forged_beacon(rng), 10.0 + n * 0.01)
        if n % 1000 == 0:
            channel.events()  # the shell drains them
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(channel.neighbours) == MAX_NEIGHBOURS
    assert channel.neighbours.get(friend_src) is not None
    assert grown < 1 << 20  # bytes: the table and the event queue, not the flood


def _with_a_useful_neighbour() -> tuple[Channel, bytes]:
    """Our channel, and the short id of a neighbour that gave us an entry we follow."""
    me, friend = node(1), node(2)
    channel = Channel(me, config=ChannelConfig(), rng=random.Random(1))
    channel.start(0.0)
    # a real neighbour that delivered an entry we wanted
    me.set_contact(ContactAction.FOLLOW, friend.feed_id, timestamp_ms=1)
    friend.post("hello", timestamp_ms=1)
    teller = Channel(friend, config=ChannelConfig(), rng=random.Random(2))
    teller.start(0.0)
    channel.receive(encode_want(channel.src, [(teller._tag(friend.feed_id), 1, True)]), 0.5)
    teller.receive(encode_want(channel.src, [(teller._tag(friend.feed_id), 1, True)]), 0.5)
    sent = teller.poll_transmit(5.0, control_ok=False, data_ok=True)
    assert sent is not None
    channel.receive(sent.message, 5.0)
    assert me.store.latest_seq(friend.feed_id) == 1
    return channel, teller.src


@settings(max_examples=200)
@given(ops=st.lists(st.tuples(st.integers(0, 200), st.booleans(), st.floats(0, 10)), max_size=400))
def test_the_table_never_passes_its_cap_and_evicts_the_unhelpful_first(
    ops: list[tuple[int, bool, float]],
) -> None:
    table = Neighbours(proven_gap_s=1.0, stranger_every_s=10.0, limit=16)
    now = 0.0
    for src_n, delivered, step in ops:
        now += step
        src = src_n.to_bytes(4, "big")
        proven_before = {s for s in table.ids() if (n := table.get(s)) and n.delivered}
        if delivered:
            table.delivered(src, now, stored=True)
        else:
            table.heard(src, net_ok=True, digest=b"dddd", now=now)
        assert len(table) <= 16
        kept = set(table.ids())
        unproven_left = any(not n.delivered for s in kept if (n := table.get(s)) and s != src)
        if unproven_left:  # a proven neighbour goes only when no unproven one is left
            assert proven_before <= kept | {src}


def test_resets_by_strangers_are_rationed_and_a_proven_neighbour_by_its_beacon_rate() -> None:
    table = Neighbours(proven_gap_s=5.0, stranger_every_s=100.0)
    granted = [table.may_reset(n.to_bytes(4, "big"), 1.0 + n) for n in range(50)]
    assert granted[:2] == [True, True]  # a burst of two
    assert sum(granted) == 2  # then one per 100 s: none in the next 48 s
    assert table.may_reset(b"late", 160.0)
    table.delivered(b"good", 160.0, stored=True)
    assert table.may_reset(b"good", 161.0)
    assert not table.may_reset(b"good", 163.0)  # faster than any real node beacons
    assert table.may_reset(b"good", 166.5)


# -- timers -----------------------------------------------------------------------------------


def test_a_forged_hold_defers_our_wants_no_longer_than_a_budget_can_hold() -> None:
    me = node(1)
    me.set_contact(ContactAction.FOLLOW, node(2).feed_id, timestamp_ms=1)  # something to want
    config = ChannelConfig(want_min_s=5.0, want_max_s=600.0, backoff_s=1.0, beacon_min_s=900.0)
    channel = Channel(me, config=config, rng=random.Random(3))
    channel.start(0.0)
    channel.receive(forged_beacon(random.Random(1), held_s=MAX_HELD_S), 1.0)  # 18 hours
    deadline = channel.next_deadline("control")
    times = []
    while deadline is not None and deadline < 5 * 3600:
        tx = channel.poll_transmit(deadline, control_ok=True, data_ok=True)
        if tx is not None and tx.message[4] == 0x02:  # a WANT
            times.append(deadline)
        deadline = channel.next_deadline("control")
    assert times
    assert times[0] <= 1.0 + 3600 + config.backoff_s


def test_forged_haves_cannot_keep_us_asking_for_ever() -> None:
    me, author = node(1), node(2)
    me.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=1)
    config = ChannelConfig(want_min_s=5.0, want_max_s=600.0, backoff_s=1.0, beacon_min_s=900.0)
    channel = Channel(me, config=config, rng=random.Random(3))
    channel.start(0.0)
    tag = channel_tag(author.feed_id, DEFAULT_NETWORK_KEY)
    rng = random.Random(5)
    wants = []
    now = 1.0
    while now < 4 * 3600:
        if now < 3600:  # a forger claims more and more, from fresh short ids, for an hour
            channel.receive(encode_have(rng.randbytes(4), [(tag, 1 << 40)]), now)
        deadline = channel.next_deadline()
        assert deadline is not None
        now = max(now + 1.0, min(deadline, now + 10.0))
        channel.handle_timer(now)
        tx = channel.poll_transmit(now, control_ok=True, data_ok=True)
        if tx is not None and tx.message[4] == 0x02:
            wants.append(now)
    in_flood = [t for t in wants if t < 3600]
    after = [t for t in wants if t > 2 * 3600 + 60]
    # A believed claim makes us ask at the short interval of a node known to be behind
    # (8 x want_min_s), never at every forged HAVE; and once the claims (at most 2 + 1
    # per 900 s) have expired, the node backs off as if nothing had been said.
    assert len(in_flood) <= 3600 / (4 * config.want_min_s) + 10  # each interval: 20..40 s
    assert len(after) <= (4 * 3600 - 2 * 3600) / config.want_max_s + 5


# -- the air: a flood must not cost real neighbours their control airtime ----------------------


_FLOOD_EVERY_S = 5.0


def _run(*, flood: bool, seed: int) -> tuple[float, float, bool]:
    """A posts 20 entries; B and C follow. Returns B's and C's control airtime over three
    hours, and whether both got everything."""
    config = ChannelConfig.for_link(frame_s=lora_airtime(251), mtu_bytes=251)
    air = Air(
        3,
        airtime_s=lora_airtime,
        seed=seed,
        config=config,
        budget=lambda: AirtimeBudget(REGIONS["EU868"], control_share=0.10),
    )
    air.follow(1, 0)
    air.follow(2, 0)
    for k in range(20):
        air.at(60 + k * 120.0, functools.partial(air.publish, 0, f"post {k} ".ljust(50, "x")))
    if flood:
        rng = random.Random(seed)
        tag = channel_tag(air.node(0).feed_id, DEFAULT_NETWORK_KEY)

        def forge() -> None:
            for victim in (1, 2):
                channel = air.radios[victim].channel
                channel.receive(forged_beacon(rng), air.now)
                # a WANT of A's feed that A never hears: B and C must not wait for its answer
                channel.receive(encode_want(rng.randbytes(4), [(tag, 1, True)]), air.now)
                channel.receive(encode_have(rng.randbytes(4), [(tag, 1 << 30)]), air.now)
                channel.events()

        for k in range(int(3 * 3600 / _FLOOD_EVERY_S)):
            air.at(1.0 + _FLOOD_EVERY_S * k, forge)
    feed = air.node(0).feed_id
    air.run_until(lambda: False, 3 * 3600)
    control = sum(log.duration_s for log in air.log if log.control and log.sender in (1, 2))
    delivered = all(air.node(i).store.latest_seq(feed) == 20 for i in (1, 2))
    return control, sum(1 for log in air.log if log.sender in (1, 2) and log.control), delivered


def test_a_beacon_flood_keeps_the_listeners_control_airtime_near_normal() -> None:
    quiet_s, quiet_n, quiet_ok = _run(flood=False, seed=1)
    flood_s, flood_n, flood_ok = _run(flood=True, seed=1)
    assert quiet_ok
    assert flood_ok
    # three hours under a forged beacon, WANT and HAVE every 5 s cost B and C together a
    # few extra beacons and wants, not their control share (3.6 s an hour each)
    assert flood_s <= 1.5 * quiet_s + 2.0, (quiet_s, flood_s, quiet_n, flood_n)

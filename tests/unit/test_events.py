"""The core reports what happened as events; the shell logs them and the queue stays bounded."""

from __future__ import annotations

import logging
import random

import pytest

from meshnode.codec.content import ContactAction
from meshnode.core.channel import Channel, ChannelConfig
from meshnode.core.events import (
    ContactSkipped,
    EntryNotServed,
    EntryReceived,
    Event,
    EventQueue,
    EventsDropped,
    FeedForked,
    FollowsChanged,
    MessageDropped,
    NeighbourHeard,
    PeerMemoryForgotten,
    PeerMemoryNotKept,
    PeerMisbehaved,
    StoreOverCap,
)
from meshnode.core.feed import Outcome
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.host.eventlog import log_event
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, PeerId
from tests.fakes import TS_MS, identity, make_chain

AUTHOR = identity(5)


def test_queue_keeps_the_newest_and_says_how_many_it_dropped() -> None:
    queue = EventQueue(limit=3)
    for excess in range(5):
        queue.push(StoreOverCap(excess_bytes=excess))
    assert queue.drain() == [
        StoreOverCap(excess_bytes=2),
        StoreOverCap(excess_bytes=3),
        StoreOverCap(excess_bytes=4),
        EventsDropped(count=2),
    ]
    assert queue.drain() == []


def test_a_fork_is_an_event_not_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    node = Node(
        identity(6), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
    )
    node.set_contact(ContactAction.FOLLOW, AUTHOR.feed_id, timestamp_ms=TS_MS)
    assert any(isinstance(e, FollowsChanged) for e in node.events())
    first, other = make_chain(AUTHOR, 1)[0], make_chain(AUTHOR, 1, size=30)[0]
    with caplog.at_level(logging.DEBUG):
        assert node.ingest(first.raw).outcome is Outcome.ADDED
        assert node.ingest(other.raw).outcome is Outcome.FORKED
    assert caplog.records == []
    assert node.events() == [FeedForked(feed=AUTHOR.feed_id, seq=1)]
    assert node.events() == []


def test_a_malformed_channel_message_is_an_event() -> None:
    node = Node(
        identity(7), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
    )
    channel = Channel(node, config=ChannelConfig(), rng=random.Random(1))
    channel.receive(b"\xff\xff garbage", 0.0)
    events = channel.events()
    assert len(events) == 1
    assert isinstance(events[0], MessageDropped)


PEER = PeerId(bytes([9]) * 32)
FEED = FeedId(bytes([8]) * 32)
LOGGED: list[tuple[Event, int, str]] = [
    (PeerMisbehaved(peer=PEER, reason="bad note"), logging.WARNING, "misbehaved: bad note"),
    (PeerMemoryForgotten(peer=PEER, reason="crc"), logging.WARNING, "damaged memory of peer"),
    (PeerMemoryNotKept(peer=PEER, reason="too big"), logging.INFO, "not keeping memory of peer"),
    (FeedForked(feed=FEED, seq=4), logging.WARNING, "forked at seq 4"),
    (ContactSkipped(feed=FEED, seq=2, reason="crc"), logging.ERROR, "skipping damaged contact"),
    (FollowsChanged(feed=FEED, seq=3), logging.DEBUG, "follow graph changed"),
    (StoreOverCap(excess_bytes=10), logging.WARNING, "10 bytes over its global cap"),
    (MessageDropped(reason="short"), logging.DEBUG, "malformed channel message: short"),
    (NeighbourHeard(short_id=b"\x01\x02\x03\x04"), logging.INFO, "radio neighbour 01020304"),
    (EntryNotServed(reason="gone"), logging.WARNING, "cannot serve a damaged entry: gone"),
    (EventsDropped(count=7), logging.WARNING, "7 events were dropped"),
]


@pytest.mark.parametrize(("event", "level", "text"), LOGGED)
def test_the_shell_logs_each_event(
    caplog: pytest.LogCaptureFixture, event: Event, level: int, text: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger="meshnode.events"):
        log_event(event)
    assert [(r.levelno, text in r.getMessage()) for r in caplog.records] == [(level, True)]


def test_entries_received_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="meshnode.events"):
        log_event(EntryReceived(peer=PEER, feed=FEED, seq=1))
    assert caplog.records == []

"""A reliable session cut while pushes were in flight resumes on the next connection."""

from __future__ import annotations

import random

from meshnode.codec.content import ContactAction
from meshnode.codec.frame import FrameType
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.core.replication import LinkInfo
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import PeerId
from tests.fakes import TS_MS, identity

A, B = identity(1), identity(2)
PA, PB = PeerId(A.feed_id), PeerId(B.feed_id)
LINK = LinkInfo(mtu_bytes=65536)


def _session(a: Node, b: Node, now: float, *, cut_after: int | None = None) -> int:
    """Run one session until quiet; entry frames past ``cut_after`` are lost in flight.

    Returns how many entry frames reached B.
    """
    a.connect(PB, now=now, link=LINK)
    b.connect(PA, now=now, link=LINK)
    arrived = 0
    for _ in range(10_000):
        moved = False
        for peer, frame in a.frames_to_send():
            a.delivered(peer, len(frame))  # the socket took it
            is_entry = frame[0] == FrameType.ENTRY
            if cut_after is not None and is_entry and arrived >= cut_after:
                continue  # in flight when the connection died
            arrived += is_entry
            b.receive_frame(PA, frame, now=now)
            moved = True
        for _, frame in b.frames_to_send():
            a.receive_frame(PB, frame, now=now)
            moved = True
        now += 0.5
        for node in (a, b):
            deadline = node.next_deadline()
            if deadline is not None and deadline <= now:
                node.handle_timer(now)
                moved = True
        if not moved:
            break
    a.disconnect(PB, now=now)
    b.disconnect(PA, now=now)
    return arrived


def test_pushes_lost_in_flight_are_pushed_again_on_reconnect() -> None:
    a = Node(A, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))
    b = Node(B, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(2))
    for i in range(500):
        a.post(f"entry {i}", timestamp_ms=TS_MS + i)
    b.set_contact(ContactAction.FOLLOW, A.feed_id, timestamp_ms=TS_MS)

    assert _session(a, b, 0.0, cut_after=100) == 100
    assert b.store.latest_seq(A.feed_id) == 100

    resent = _session(a, b, 1000.0)
    assert b.store.latest_seq(A.feed_id) == 500
    # A cannot know which of its pushes arrived, so it repeats those after B's last note
    # (here all of them): at most the 100 B held, on top of the 400 it lacked.
    assert 400 <= resent <= 500
    assert b.check().ok

    # and a quiet reconnect after that sends no entry at all
    assert _session(a, b, 2000.0) == 0

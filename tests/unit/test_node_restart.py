"""A capped feed restarts past a gap its cap exceeds; a whole feed, a forgery or a kept
private entry never makes it drop what it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.core.feed import Outcome, restarts_at
from meshnode.types import FeedId, MsgId, Seq
from tests.fakes import make_chain
from tests.unit.test_mailbox import STRANGER, FakeClock, capped_node
from tests.unit.test_mailbox import chain as mixed_chain
from tests.unit.test_node import ALICE, BOB, alice_follows_bob, follow, make_node

if TYPE_CHECKING:
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node

BOB_FEED = FeedId(BOB.feed_id)


def capped_bob(held: range) -> tuple[Node, list[Entry]]:
    """A node keeping BOB's last 5 entries (two hops away), holding ``held`` of them."""
    node = make_node(partial_entries=5)
    follow(node, ALICE)
    node.ingest(alice_follows_bob().raw)
    entries = make_chain(BOB, 40)
    for seq in held:
        assert node.ingest(entries[seq - 1].raw).outcome is Outcome.ADDED
    return node, entries


def test_restart_rule() -> None:
    assert restarts_at(15, 10, 5)  # 11..15 once 15 is held: nothing of 6..10 among them
    assert not restarts_at(14, 10, 5)  # 10..14: seq 10 would still be kept
    assert not restarts_at(11, 10, 1)  # the next entry is an append
    assert not restarts_at(100, 10, None)  # a feed kept whole never skips


def test_capped_feed_restarts_past_a_gap_its_cap_exceeds() -> None:
    node, entries = capped_bob(range(6, 11))
    gap = node.ingest(entries[13].raw)  # seq 14: seq 10 is among the newest 5 up to 14
    assert (gap.outcome, gap.reason) == (Outcome.REJECTED, "gap: holds up to seq 10, got seq 14")
    assert node.store.ranges()[BOB_FEED] == (6, 10)
    assert node.ingest(entries[14].raw).outcome is Outcome.ADDED
    assert node.store.ranges()[BOB_FEED] == (15, 15)
    assert node.ingest(entries[13].raw).outcome is Outcome.REJECTED  # before the range now
    for entry in entries[15:22]:
        assert node.ingest(entry.raw).outcome is Outcome.ADDED
    assert node.store.ranges()[BOB_FEED] == (18, 22)
    assert node.check().ok


def test_chain_is_checked_from_the_restart_entry_on() -> None:
    node, entries = capped_bob(range(6, 11))
    assert node.ingest(entries[29].raw).outcome is Outcome.ADDED
    stray = make_chain(BOB, 1, start=31, previous=MsgId(bytes(32)))[0]
    assert node.ingest(stray.raw).outcome is Outcome.FORKED
    assert node.store.ranges()[BOB_FEED] == (30, 30)


def test_forged_entry_past_the_gap_is_rejected_and_nothing_is_dropped() -> None:
    node, entries = capped_bob(range(6, 11))
    raw = bytearray(entries[29].raw)
    raw[-1] ^= 1  # the signature no longer holds
    result = node.ingest(bytes(raw))
    assert result.outcome is Outcome.REJECTED
    assert "signature" in result.reason
    assert node.store.ranges()[BOB_FEED] == (6, 10)
    assert node.ingest(entries[29].raw).outcome is Outcome.ADDED


def test_whole_feed_never_restarts() -> None:
    node = make_node(partial_entries=5)
    follow(node, ALICE)  # one hop: kept whole
    entries = make_chain(ALICE, 40)
    for entry in entries[:10]:
        node.ingest(entry.raw)
    assert node.ingest(entries[39].raw).outcome is Outcome.REJECTED
    assert node.store.ranges()[FeedId(ALICE.feed_id)] == (1, 10)


def test_kept_private_entry_holds_the_feed_back_from_a_restart() -> None:
    clock = FakeClock()
    node = capped_node(clock)  # keeps 3 entries of STRANGER's feed
    entries = mixed_chain(STRANGER, ".p" + "." * 30)
    for entry in entries[:5]:
        node.ingest(entry.raw)
    assert node.store.ranges()[FeedId(STRANGER.feed_id)] == (2, 5)  # seq 2 is private
    assert node.ingest(entries[29].raw).outcome is Outcome.REJECTED
    assert node.store.get(FeedId(STRANGER.feed_id), Seq(2)) == entries[1].raw
    clock.advance_days(31)
    node.expire_mailbox()
    assert node.ingest(entries[29].raw).outcome is Outcome.ADDED
    assert node.store.ranges()[FeedId(STRANGER.feed_id)] == (30, 30)

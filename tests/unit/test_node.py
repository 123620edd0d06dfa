"""Node rules: publish, ingest, forks, policy and caps, over the memory store."""

from __future__ import annotations

import random

import pytest

from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType, Entry, create_entry, decode_entry
from meshnode.core.feed import Outcome
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node, NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.errors import ForkError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, format_feed_id
from meshnode.types import FeedId, MsgId, Seq
from tests.fakes import TS_MS, identity, make_chain

ME, ALICE, BOB, CAROL = identity(1), identity(2), identity(3), identity(4)


def alice_follows_bob() -> Entry:
    """ALICE's first entry: she follows BOB (so BOB is two hops from whoever follows her)."""
    return create_entry(
        ALICE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=TS_MS,
        content_type=ContentType.CONTACT,
        content=bytes([ContactAction.FOLLOW]) + BOB.feed_id,
    )


def make_node(who: Identity = ME, **policy: int) -> Node:
    config = NodeConfig(policy=PolicyConfig(**policy))
    return Node(
        who,
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        config=config,
        rng=random.Random(1),
    )


def follow(node: Node, *targets: Identity) -> None:
    for target in targets:
        node.set_contact(ContactAction.FOLLOW, target.feed_id, timestamp_ms=TS_MS)


def test_publish_chains_own_feed() -> None:
    node = make_node()
    first = node.post("one", timestamp_ms=TS_MS)
    second = node.post("two", timestamp_ms=TS_MS + 1)
    assert (first.seq, second.seq) == (1, 2)
    assert second.previous == first.id
    assert [e.plain_content() for e in node.iter_feed(ME.feed_id)] == [b"one", b"two"]
    assert node.check().ok


def test_ingest_followed_feed_then_held() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 3)
    assert [node.ingest(e.raw).outcome for e in chain] == [Outcome.ADDED] * 3
    assert node.ingest(chain[1].raw).outcome is Outcome.HELD
    assert node.store.latest_seq(ALICE.feed_id) == 3


def test_unfollowed_feed_is_unwanted_and_follow_is_live() -> None:
    node = make_node()
    chain = make_chain(ALICE, 1)
    assert node.ingest(chain[0].raw).outcome is Outcome.UNWANTED
    follow(node, ALICE)
    assert node.ingest(chain[0].raw).outcome is Outcome.ADDED


def test_friend_of_friend_arrives_live_from_a_followed_contact_entry() -> None:
    node = make_node()
    follow(node, ALICE)
    contact = alice_follows_bob()
    bob_post = make_chain(BOB, 1)[0]
    assert node.ingest(bob_post.raw).outcome is Outcome.UNWANTED
    assert node.ingest(contact.raw).outcome is Outcome.ADDED
    assert node.hops(BOB.feed_id) == 2
    assert node.ingest(bob_post.raw).outcome is Outcome.ADDED


def test_block_stops_replication() -> None:
    node = make_node()
    follow(node, ALICE)
    node.set_contact(ContactAction.BLOCK, ALICE.feed_id, timestamp_ms=TS_MS)
    assert node.hops(ALICE.feed_id) is None
    assert node.ingest(make_chain(ALICE, 1)[0].raw).outcome is Outcome.UNWANTED


def test_contacts_reload_when_node_reopens() -> None:
    node = make_node()
    follow(node, ALICE)
    again = Node(ME, network_key=DEFAULT_NETWORK_KEY, store=node.store, rng=random.Random(2))
    assert again.hops(ALICE.feed_id) == 1


def test_forged_signature_is_rejected_and_nothing_stored() -> None:
    node = make_node()
    follow(node, ALICE)
    raw = bytearray(make_chain(ALICE, 1)[0].raw)
    raw[-1] ^= 1
    result = node.ingest(bytes(raw))
    assert result.outcome is Outcome.REJECTED
    assert "signature" in result.reason
    assert node.store.latest_seq(ALICE.feed_id) == 0


def test_entry_of_another_network_is_rejected() -> None:
    node = make_node()
    follow(node, ALICE)
    other = make_chain(ALICE, 1, network_key=bytes(32))[0]
    assert node.ingest(other.raw).outcome is Outcome.REJECTED


def test_malformed_bytes_are_rejected_not_raised() -> None:
    node = make_node()
    result = node.ingest(b"\x10garbage")
    assert result.outcome is Outcome.REJECTED
    assert result.reason.startswith("malformed")


def test_gap_is_rejected() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 3)
    node.ingest(chain[0].raw)
    result = node.ingest(chain[2].raw)
    assert result.outcome is Outcome.REJECTED
    assert "gap" in result.reason


def test_fork_same_seq_keeps_proof_and_stops_feed() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 2)
    other = make_chain(ALICE, 1, size=30)[0]
    node.ingest(chain[0].raw)
    assert node.ingest(other.raw).outcome is Outcome.FORKED
    assert node.ingest(chain[1].raw).outcome is Outcome.REJECTED
    assert node.store.forks()[0].raw == other.raw
    assert node.status()["forked"] == [{"feed": format_feed_id(ALICE.feed_id), "seq": 1}]
    assert node.check().forked


def test_fork_by_wrong_previous() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 1)
    node.ingest(chain[0].raw)
    stray = make_chain(ALICE, 1, start=2, previous=MsgId(bytes(32)))[0]
    assert node.ingest(stray.raw).outcome is Outcome.FORKED


def test_own_forked_feed_refuses_to_publish() -> None:
    node = make_node()
    node.post("mine", timestamp_ms=TS_MS)
    twin = make_node()  # same key used elsewhere
    clash = twin.post("other device", timestamp_ms=TS_MS)
    assert node.ingest(clash.raw).outcome is Outcome.FORKED
    with pytest.raises(ForkError):
        node.post("more", timestamp_ms=TS_MS)


def test_hop_two_keeps_last_n_entries() -> None:
    node = make_node(partial_entries=5)
    follow(node, ALICE)
    node.ingest(alice_follows_bob().raw)
    for entry in make_chain(BOB, 12):
        assert node.ingest(entry.raw).outcome is Outcome.ADDED
    assert node.store.ranges()[FeedId(BOB.feed_id)] == (8, 12)


def test_capped_feed_accepts_a_mid_feed_start() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 10)
    assert node.ingest(chain[6].raw).outcome is Outcome.ADDED
    assert node.ingest(chain[7].raw).outcome is Outcome.ADDED
    assert node.ingest(chain[2].raw).outcome is Outcome.REJECTED
    assert node.store.ranges()[FeedId(ALICE.feed_id)] == (7, 8)


def test_feed_byte_cap_evicts_oldest() -> None:
    node = make_node(feed_cap_bytes=1000)
    follow(node, ALICE)
    for entry in make_chain(ALICE, 30):
        node.ingest(entry.raw)
    first, latest = node.store.ranges()[FeedId(ALICE.feed_id)]
    assert latest == 30
    assert first > 1
    assert node.store.feed_bytes(FeedId(ALICE.feed_id)) <= 1000


def test_global_cap_evicts_least_wanted_first_and_never_own_feed() -> None:
    node = make_node(global_cap_bytes=6000, partial_entries=1000)
    for i in range(10):
        node.post(f"mine {i}", timestamp_ms=TS_MS)
    follow(node, ALICE)
    node.ingest(alice_follows_bob().raw)
    for entry in make_chain(BOB, 30):
        node.ingest(entry.raw)
    ranges = node.store.ranges()
    assert ranges[FeedId(ME.feed_id)][0] == 1
    assert ranges[FeedId(ALICE.feed_id)] == (1, 1)
    assert ranges[FeedId(BOB.feed_id)][0] > 1
    assert node.store.stats().entry_bytes <= 6000


def test_check_finds_a_broken_chain() -> None:
    node = make_node()
    follow(node, ALICE)
    chain = make_chain(ALICE, 3)
    for entry in chain:
        node.ingest(entry.raw)
    # Swap a stored record for a validly signed entry that does not chain.
    stray = make_chain(ALICE, 1, start=2, previous=MsgId(bytes(32)))[0]
    feed = node.store._feeds[FeedId(ALICE.feed_id)]  # type: ignore[attr-defined]
    feed.raws[1] = stray.raw
    report = node.check()
    assert not report.ok
    assert [(p.seq, p.reason) for p in report.problems] == [
        (2, "previous hash does not match entry seq-1")
    ]
    assert decode_entry(node.store.get(FeedId(ALICE.feed_id), Seq(3))).seq == 3

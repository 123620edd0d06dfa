"""Entries decoded and checked ahead of their turn give the node exactly what it gets when
it decodes and checks each frame itself: the same stored bytes, events and replies."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.content import ContactAction
from meshnode.codec.frame import encode_entry_frame
from meshnode.codec.message import Entry, decode_entry, encode_short_entry
from meshnode.core.ebt.ahead import same_entry
from meshnode.core.events import Event
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.core.verifier import signatures_valid
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, PeerId, Seq
from tests.fakes import TS_MS, identity, make_chain

ME, PEER = identity(60), identity(61)
AUTHORS = [identity(62), identity(63), identity(64)]
STRANGER = identity(65)  # followed by no one
LENGTH = 14
CHAINS = {who.feed_id: make_chain(who, LENGTH) for who in [*AUTHORS, STRANGER]}
FORKS = {who.feed_id: make_chain(who, LENGTH, size=27) for who in AUTHORS}
HELD = 3  # the receiver starts with the first entries of each followed feed
EPOCH = b"\x07" * 8

KINDS = ["next", "next", "next", "full", "forged", "forged_full", "duplicate", "gap", "fork"]
KINDS += ["stranger", "fork_held", "forged_on"]
actions = st.lists(st.tuples(st.integers(0, len(AUTHORS) - 1), st.sampled_from(KINDS)), max_size=60)


def _node(who_n: int, *, holds: bool) -> Node:
    who = identity(who_n)
    store = MemoryStore(EPOCH)
    node = Node(who, network_key=DEFAULT_NETWORK_KEY, store=store, rng=random.Random(3))
    for author in AUTHORS:
        node.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=TS_MS)
        if holds:
            for entry in CHAINS[author.feed_id][:HELD]:
                node.ingest(entry.raw)
    return node


def _opened() -> tuple[Node, Node]:
    """The receiver and a peer with an open session, the peer's names given."""
    me, peer = _node(60, holds=True), _node(61, holds=False)
    me.connect(PeerId(PEER.feed_id), now=0.0)
    peer.connect(PeerId(ME.feed_id), now=0.0)
    for _ in range(20):
        moved = False
        for src, dst, who in ((me, peer, ME), (peer, me, PEER)):
            for _, frame in src.frames_to_send():
                dst.receive_frame(PeerId(who.feed_id), frame, now=0.1)
                moved = True
        if not moved:
            break
    me.events()
    return me, peer


def _forged(entry: Entry) -> Entry:
    return decode_entry(entry.raw[:-1] + bytes([entry.raw[-1] ^ 1]))


def _frames(peer: Node, plan: list[tuple[int, str]]) -> list[bytes]:
    """ENTRY frames as the peer would push them, with forged, repeated, skipped, forked
    and unwanted entries mixed in."""
    session = peer.replicator.sessions[PeerId(ME.feed_id)]
    sent = {who.feed_id: HELD for who in AUTHORS}
    frames = []
    for n, kind in plan:
        feed = AUTHORS[n].feed_id
        seq = min(LENGTH, sent[feed] + (2 if kind == "gap" else 1))
        if kind in ("duplicate", "fork_held"):
            seq = max(1, sent[feed])
        entry = (FORKS if kind.startswith("fork") else CHAINS)[feed][seq - 1]
        if kind == "stranger":
            entry = CHAINS[STRANGER.feed_id][0]
        if kind.startswith("forged"):
            entry = _forged(entry)
        if kind in ("full", "fork", "fork_held", "stranger", "forged_full") or entry.seq == 1:
            frames.append(encode_entry_frame(None, 0, entry.raw))
        else:
            ref = peer.replicator.names.ref(session, FeedId(feed))
            frames.append(encode_entry_frame(ref, entry.seq, encode_short_entry(entry)))
        if kind in ("next", "full", "forged_on"):
            sent[feed] = seq
    return frames


Held = dict[FeedId, list[bytes]]
Outcome = tuple[Held, object, list[Event], list[tuple[PeerId, bytes]]]


def _held(me: Node) -> Held:
    store = me.store
    return {
        f: [store.get(f, Seq(s)) for s in range(a, b + 1)] for f, (a, b) in store.ranges().items()
    }


def _outcome(me: Node) -> Outcome:
    return _held(me), me.status()["forked"], me.events(), me.frames_to_send()


def _one_by_one(frames: list[bytes]) -> Outcome:
    me, _ = _opened()
    for frame in frames:
        me.receive_frame(PeerId(PEER.feed_id), frame, now=1.0)
    return _outcome(me)


def _ahead(frames: list[bytes], cuts: list[int], lag: int) -> Outcome:
    """Reads cut at ``cuts``, each decoded and checked ``lag`` reads before the node takes it."""
    me, _ = _opened()
    peer_id = PeerId(PEER.feed_id)
    ahead = me.replicator.entries_ahead(peer_id)
    bounds = sorted({0, len(frames), *(c for c in cuts if c < len(frames))})
    reads = [frames[a:b] for a, b in itertools.pairwise(bounds)]
    waiting: list[tuple[list[bytes], list[Entry | None], list[bool | None]]] = []

    def take(read: list[bytes], entries: list[Entry | None], verdicts: list[bool | None]) -> None:
        it = iter(verdicts)
        for frame, entry in zip(read, entries, strict=True):
            ok = None if entry is None else next(it)
            me.receive_frame(peer_id, frame, now=1.0, ahead=entry, signature_ok=ok)

    for read in reads:
        entries = ahead.decode(read)
        waiting.append((read, entries, signatures_valid([e.raw for e in entries if e], KEY)))
        if len(waiting) > lag:
            take(*waiting.pop(0))
    for pending in waiting:
        take(*pending)
    ahead.clear()
    return _outcome(me)


KEY = DEFAULT_NETWORK_KEY


@settings(max_examples=60, deadline=None)
@given(plan=actions, cuts=st.lists(st.integers(1, 60), max_size=8), lag=st.integers(0, 3))
def test_checked_ahead_gives_what_one_by_one_gives(
    plan: list[tuple[int, str]], cuts: list[int], lag: int
) -> None:
    _, peer = _opened()
    frames = _frames(peer, plan)
    assert _ahead(frames, cuts, lag) == _one_by_one(frames)


def test_a_run_of_entries_is_stored_from_the_reads_decoded_ahead() -> None:
    _, peer = _opened()
    plan = [(n, "next") for n in range(len(AUTHORS)) for _ in range(LENGTH - HELD)]
    frames = _frames(peer, plan)
    me, _ = _opened()
    # Every entry decodes before the node took any: the ids of those before it are guessed.
    assert None not in me.replicator.entries_ahead(PeerId(PEER.feed_id)).decode(frames)
    held, forked, _, _ = _ahead(frames, [5, 9, 20], lag=2)
    assert forked == []
    assert held == _one_by_one(frames)[0]
    for author in AUTHORS:
        assert held[author.feed_id] == [e.raw for e in CHAINS[author.feed_id]]


def test_a_forged_entry_checked_ahead_is_refused_alone_and_drops_the_peer() -> None:
    _, peer = _opened()
    plan = [(0, "next"), (1, "next"), (0, "forged_full"), (0, "next"), (2, "next")]
    held, _, events, _ = _ahead(_frames(peer, plan), [], lag=1)
    assert [len(held[a.feed_id]) for a in AUTHORS] == [HELD + 1, HELD + 1, HELD]
    assert any("bad signature" in str(e) for e in events)


def test_same_entry_holds_only_for_the_entry_the_frame_rebuilds_to() -> None:
    chain = CHAINS[AUTHORS[0].feed_id]
    entry, body = chain[4], encode_short_entry(chain[4])
    assert same_entry(entry, body, entry.author, 5, chain[3].id)
    assert not same_entry(entry, body, entry.author, 5, chain[2].id)  # another previous
    assert not same_entry(entry, body, entry.author, 6, chain[3].id)
    assert not same_entry(entry, encode_short_entry(chain[5]), entry.author, 5, chain[3].id)
    forged = encode_short_entry(_forged(entry))
    assert not same_entry(entry, forged, entry.author, 5, chain[3].id)

"""What a TCP peer can make a node hold: names, notes, per-peer memory and its writes.

Every table a peer's frames can grow is keyed by feeds the node keeps or holds, or capped;
the memory kept between sessions is capped per peer, in count and in bytes, evicted
strangers first, and its writes for strangers are budgeted. These tests drive the sans-IO
core directly, as a stranger would over a link: HELLO, then whatever frames it likes.
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.content import ContactAction
from meshnode.codec.frame import (
    PROTOCOL_VERSION,
    FrameType,
    Hello,
    encode_define,
    encode_define_key,
    encode_entry_frame,
    encode_hello,
    encode_indexes,
    make_ref,
)
from meshnode.codec.message import encode_short_entry
from meshnode.codec.varint import encode_varint
from meshnode.core.clocks import (
    Note,
    decode_peer_memory,
    encode_note,
    encode_peer_memory,
    feed_tag,
)
from meshnode.core.ebt import keeper
from meshnode.core.ebt.session import MAX_UNKNOWN_FEEDS, ReplicationConfig
from meshnode.core.events import PeerMemoryNotKept, PeerMisbehaved
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node, NodeConfig
from meshnode.core.replication import LinkInfo
from meshnode.errors import ConfigError, StoreFull
from meshnode.host.config import node_config, parse_config
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.sim.mesh import LinkSpec, Mesh
from meshnode.store.flatfile import FileStore
from meshnode.types import FeedId, PeerId
from tests.fakes import TS_MS, identity, make_chain

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.core.ebt.session import Session
    from meshnode.core.events import Event

ME = identity(1)
AUTHORS = [identity(n) for n in range(20, 26)]  # followed; the node holds 3 entries of each
WANTED_LATER = identity(30)  # followed, nothing held yet: a peer can give it
FRIEND = identity(40)  # a peer whose feed the node follows


def make_node(*, store: MemoryStore | None = None, **replication: int) -> Node:
    """The victim: follows AUTHORS (holding some of each), WANTED_LATER and FRIEND."""
    node = Node(
        ME,
        network_key=DEFAULT_NETWORK_KEY,
        store=store or MemoryStore(epoch=b"victim!!"),
        config=NodeConfig(replication=ReplicationConfig(**replication)),
        rng=random.Random(1),
    )
    for who in [*AUTHORS, WANTED_LATER, FRIEND]:
        node.set_contact(ContactAction.FOLLOW, who.feed_id, timestamp_ms=TS_MS)
    for who in AUTHORS:
        for entry in make_chain(who, 3):
            node.ingest(entry.raw)
    node.events()
    return node


def stranger(n: int) -> PeerId:
    """A throwaway identity (the core never checks it: the handshake did)."""
    return PeerId(hashlib.sha256(b"stranger %d" % n).digest())


def epoch_of(peer: PeerId) -> bytes:
    return peer[:8]


def meet(node: Node, peer: PeerId, now: float = 0.0) -> Session:
    """``peer`` connects and says HELLO; the node's opening frames are drained."""
    node.connect(peer, now=now, link=LinkInfo())
    hello = Hello(
        version=PROTOCOL_VERSION,
        epoch=epoch_of(peer),
        seen_epoch=bytes(8),
        got_yours=False,
        received=0,
    )
    node.receive_frame(peer, encode_hello(hello), now=now)
    node.frames_to_send()
    return node.replicator.sessions[peer]


def known_feeds(node: Node) -> set[FeedId]:
    return set(node.replicated()) | set(node.store.feeds())


def random_tags(rng: random.Random, n: int) -> list[int]:
    return sorted(rng.sample(range(1 << 32), n))


def misbehaved(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, PeerMisbehaved)]


def not_kept(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, PeerMemoryNotKept)]


def check_bounds(node: Node, s: Session, cap: int) -> None:
    """Every table the peer's frames reach is within its bound."""
    known = known_feeds(node)
    memory, names = s.memory, s.names
    assert len(memory.unknown) <= cap
    assert set(memory.their_table.values()) <= known
    assert {f: i for i, f in memory.their_table.items()} == names.their_index  # one name each
    assert not set(memory.their_table) & set(memory.unknown)
    assert set(memory.my_table) <= known
    for table in (memory.remote, memory.sent, memory.pushed, s.flow.assumed, s.clock.heard):
        assert set(table) <= known
    assert len(names.wanted_keys) <= 10_000


# -- names: DEFINE and DEFINE_KEY ------------------------------------------------------------


def test_the_attackers_define_flood_is_capped_and_drops_the_peer() -> None:
    # The trial: 1.5 MiB of DEFINE frames took a daemon from 30 to 231 MiB.
    node = make_node()
    peer = stranger(1)
    s = meet(node, peer)
    rng = random.Random(2)
    frames = [encode_define(10 + k * 2000, random_tags(rng, 2000)) for k in range(200)]
    assert sum(map(len, frames)) > 1_300_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for frame in frames:
            node.receive_frame(peer, frame, now=1.0)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert len(s.memory.unknown) == MAX_UNKNOWN_FEEDS  # the cap, and not one more
    assert grown < 3 << 20  # about 1 MB of names, then the peer is gone (40 MB before)
    assert peer not in node.replicator.sessions
    reasons = misbehaved(node.events())
    assert reasons == [
        f"named more than {MAX_UNKNOWN_FEEDS} feeds this node does not keep"
        " (node.max_unknown_feeds)"
    ]
    assert node.store.peer_state(peer) is None  # what a rule breaker left is not kept


def test_a_peer_naming_as_many_unknown_feeds_as_allowed_stays() -> None:
    node = make_node(max_unknown_feeds=100)
    s = meet(node, stranger(1))
    node.receive_frame(s.peer, encode_define(0, random_tags(random.Random(3), 100)), now=1.0)
    assert misbehaved(node.events()) == []
    node.receive_frame(s.peer, encode_define(0, random_tags(random.Random(4), 100)), now=1.0)
    assert misbehaved(node.events()) == []  # the same indexes named again: no growth
    node.receive_frame(s.peer, encode_define(100, [7]), now=1.0)
    assert misbehaved(node.events())  # the 101st
    assert len(s.memory.unknown) == 100


def test_define_key_holds_no_stranger_keys_and_one_name_per_feed() -> None:
    node = make_node(max_unknown_feeds=500)
    s = meet(node, stranger(1))
    rng = random.Random(5)
    pairs = [(i, rng.randbytes(32)) for i in range(400)]
    node.receive_frame(s.peer, encode_define_key(pairs), now=1.0)
    assert s.memory.their_table == {}  # 400 keys of feeds we do not keep: tags only
    assert len(s.memory.unknown) == 400
    # One of our feeds named under 300 indexes keeps only the latest name.
    ours = bytes(AUTHORS[0].feed_id)
    node.receive_frame(s.peer, encode_define_key([(i, ours) for i in range(1000, 1300)]), now=1.0)
    assert s.memory.their_table == {1299: AUTHORS[0].feed_id}
    # A name moved onto an index the peer had used for an unknown feed replaces it.
    node.receive_frame(s.peer, encode_define_key([(5, ours)]), now=1.0)
    assert s.memory.their_table == {5: AUTHORS[0].feed_id}
    assert 5 not in s.memory.unknown
    check_bounds(node, s, 500)
    assert misbehaved(node.events()) == []


def test_a_stranger_key_becomes_a_name_once_the_node_wants_the_feed() -> None:
    node = make_node()
    s = meet(node, stranger(1))
    later = identity(50)
    node.receive_frame(s.peer, encode_define_key([(3, bytes(later.feed_id))]), now=1.0)
    assert s.memory.their_table == {}
    node.set_contact(ContactAction.FOLLOW, later.feed_id, timestamp_ms=TS_MS)
    assert s.memory.their_table == {3: later.feed_id}  # matched by its tag


# -- notes and entries -----------------------------------------------------------------------


def test_notes_about_feeds_the_node_does_not_keep_grow_nothing() -> None:
    node = make_node(max_unknown_feeds=2000)
    s = meet(node, stranger(1))
    node.receive_frame(s.peer, encode_define(0, random_tags(random.Random(6), 2000)), now=1.0)
    sizes = (len(s.memory.remote), len(s.memory.sent), len(s.memory.my_table))
    note = encode_note(Note(5, True, 0, 6))  # a query: "what do you have of it?"
    for index in range(0, 4000, 100):
        refs = [make_ref(i, theirs) for i in range(index, index + 100) for theirs in (False, True)]
        frame = bytes((FrameType.NOTES,)) + b"".join(encode_varint(r) + note for r in refs)
        node.receive_frame(s.peer, frame, now=1.0)
        node.frames_to_send()
    assert (len(s.memory.remote), len(s.memory.sent), len(s.memory.my_table)) == sizes
    check_bounds(node, s, 2000)
    assert misbehaved(node.events()) == []


def test_notes_from_many_identities_about_unknown_feeds_grow_no_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keeper, "MAX_REMEMBERED_PEERS", 10)
    node = make_node()
    choice = node.replicator.choice
    before = (dict(choice.upstream), dict(choice.stalls), dict(choice.first_from))
    rng = random.Random(8)
    note = encode_note(Note(50, False))  # "I have 50 of it, push it to me"
    for n in range(100):
        peer = stranger(n)
        meet(node, peer, float(n))
        keys = [(i, rng.randbytes(32)) for i in range(20)]
        node.receive_frame(peer, encode_define_key(keys), now=float(n))
        refs = [make_ref(i, False) for i in [*range(20), *range(100, 120)]]
        frame = bytes((FrameType.NOTES,)) + b"".join(encode_varint(r) + note for r in refs)
        node.receive_frame(peer, frame, now=float(n))
        node.frames_to_send()
        node.handle_timer(n + 0.5)
        node.frames_to_send()
        node.disconnect(peer, now=n + 0.5)
    assert (choice.upstream, choice.stalls, choice.first_from) == before
    assert len(node.store.peers()) <= 10
    for peer in node.store.peers():
        memory = decode_peer_memory(node.store.peer_state(peer) or b"")
        assert memory.their_table == {}
        assert set(memory.remote) <= known_feeds(node)  # our own, as a leader assumes them
        assert len(memory.unknown) == 20
    assert misbehaved(node.events()) == []


def test_pushed_entries_of_feeds_nobody_named_leave_no_trace() -> None:
    node = make_node()
    s = meet(node, stranger(1))
    before = (list(s.memory.my_table), dict(s.memory.sent))
    for n in range(60):
        entry = make_chain(identity(100 + n), 1)[0]
        node.receive_frame(s.peer, encode_entry_frame(None, 0, entry.raw), now=1.0)
    out = [frame for _, frame in node.frames_to_send()]
    assert (list(s.memory.my_table), dict(s.memory.sent)) == before
    assert not [f for f in out if f[0] in (FrameType.DEFINE, FrameType.DEFINE_KEY)]
    assert misbehaved(node.events()) == []


# -- per-peer memory kept between sessions ------------------------------------------------------


class CountingStore(MemoryStore):
    """A memory store that counts what is written for peers, and can refuse it."""

    def __init__(self) -> None:
        super().__init__(epoch=b"victim!!")
        self.peer_bytes_written = 0
        self.peer_writes = 0
        self.full = False

    def set_peer_state(self, peer: PeerId, state: bytes) -> None:
        if self.full:
            raise StoreFull("no room left on the disk")
        self.peer_bytes_written += len(state)
        self.peer_writes += 1
        super().set_peer_state(peer, state)


def visit(node: Node, peer: PeerId, now: float, *, names: int = 0, seed: int = 0) -> None:
    """``peer`` meets the node, names ``names`` feeds it does not keep, and leaves."""
    s = meet(node, peer, now)
    if names:
        node.receive_frame(peer, encode_define(0, random_tags(random.Random(seed), names)), now=now)
    assert peer in node.replicator.sessions, misbehaved(node.events())
    node.disconnect(peer, now=now)
    assert s.memory.epoch


def test_throwaway_identities_never_evict_a_followed_or_useful_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keeper, "MAX_REMEMBERED_PEERS", 20)
    node = make_node()
    friend = PeerId(FRIEND.feed_id)
    visit(node, friend, 0.0)
    useful = stranger(9999)
    s = meet(node, useful, 1.0)
    gift = make_chain(WANTED_LATER, 1)[0]
    node.receive_frame(useful, encode_entry_frame(None, 0, gift.raw), now=1.0)
    assert s.added == 1
    node.disconnect(useful, now=1.0)
    for n in range(300):
        visit(node, stranger(n), 2.0 + n, names=50, seed=n)
        assert len(node.store.peers()) <= 20
    remembered = node.store.peers()
    assert friend in remembered
    assert useful in remembered
    assert stranger(299) in remembered  # the newest stranger, over older ones
    assert stranger(0) not in remembered
    assert len(node.replicator.keeper.useful) <= 20


def test_the_bytes_remembered_stay_under_the_cap() -> None:
    cap = 64 << 10
    node = make_node(peer_memory_cap_bytes=cap)
    friend = PeerId(FRIEND.feed_id)
    visit(node, friend, 0.0, names=300, seed=1)
    for n in range(200):
        visit(node, stranger(n), 1.0 + n, names=300, seed=n)
        assert sum(node.store.peers().values()) <= cap
    assert friend in node.store.peers()


def test_strangers_memory_writes_share_an_hourly_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keeper, "SAVE_BUDGET_BYTES", 100_000)
    store = CountingStore()
    node = make_node(store=store)
    for n in range(100):  # each stranger's memory is about 3.5 KB
        visit(node, stranger(n), 10.0, names=500, seed=n)
    assert 90_000 <= store.peer_bytes_written <= 100_000
    reasons = not_kept(node.events())
    assert len(reasons) == 1  # one line for the whole flood
    assert "0 MiB of writes an hour" in reasons[0]
    # A followed peer's memory is written whatever the budget.
    written = store.peer_writes
    visit(node, PeerId(FRIEND.feed_id), 10.0, names=500)
    assert store.peer_writes == written + 1
    # The budget comes back with time.
    visit(node, stranger(1000), 10.0 + keeper.SAVE_BUDGET_S / 2, names=500)
    assert store.peer_writes == written + 2


def test_memory_that_did_not_change_is_not_written_again() -> None:
    store = CountingStore()
    node = make_node(store=store)
    peer = stranger(1)
    visit(node, peer, 0.0, names=100)
    assert store.peer_writes == 1
    for now in range(1, 50):  # reconnects that end before the peer's HELLO
        node.connect(peer, now=now, link=LinkInfo())
        node.disconnect(peer, now=now)
    assert store.peer_writes == 1


def test_a_memory_over_its_limit_is_refused_with_one_event() -> None:
    node = make_node(peer_memory_cap_bytes=4096)
    peer = stranger(1)
    visit(node, peer, 0.0, names=2000)  # about 14 KB encoded
    assert node.store.peer_state(peer) is None
    reasons = not_kept(node.events())
    assert len(reasons) == 1
    assert "over the limit of 4096" in reasons[0]


def test_a_giant_stored_memory_is_forgotten_not_decoded() -> None:
    # A store written before the limits (the trial's reached 39 MB and a traceback).
    store = MemoryStore(epoch=b"victim!!")
    peer = stranger(1)
    store.set_peer_state(peer, b"\x01" + bytes(keeper.MAX_PEER_MEMORY_BYTES))
    node = make_node(store=store)
    s = meet(node, peer)
    assert not s.hello.delta  # a first meeting
    assert store.peer_state(peer) is None
    assert "over the limit" in not_kept(node.events())[0]
    node.disconnect(peer, now=1.0)
    assert 0 < len(store.peer_state(peer) or b"") <= keeper.MAX_PEER_MEMORY_BYTES


def test_a_stored_memory_naming_too_many_unknown_feeds_is_forgotten() -> None:
    store = MemoryStore(epoch=b"victim!!")
    peer = stranger(1)
    node = make_node(store=store)
    visit(node, peer, 0.0, names=300)
    node = make_node(store=store, max_unknown_feeds=100)  # the operator lowered the cap
    meet(node, peer)
    assert "300 feeds this node does not keep" in not_kept(node.events())[0]
    assert store.peer_state(peer) is None


def test_a_store_error_while_saving_is_an_event_not_a_traceback() -> None:
    store = CountingStore()
    node = make_node(store=store)
    store.full = True
    visit(node, stranger(1), 0.0, names=10)
    assert "the store refused it: no room left on the disk" in not_kept(node.events())[0]


def test_memory_is_still_kept_and_used_between_honest_peers() -> None:
    mesh = Mesh(2, seed=4)
    mesh.follow(0, 1)
    mesh.follow(1, 0)
    mesh.publish(0, "hello")
    mesh.add_links([(0, 1)], LinkSpec())
    mesh.run_until_quiet(limit_s=30)
    mesh.cut(0, 1)
    mesh.publish(1, "news")
    before = mesh.traffic().control_bytes
    mesh.mend(0, 1)
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.clocks_agree()
    assert mesh.traffic().control_bytes - before < 100  # a delta, not a first meeting


def test_an_honest_peer_with_more_unknown_feeds_than_allowed_is_dropped_until_raised() -> None:
    def pair(cap: int) -> Mesh:
        mesh = Mesh(
            2, seed=1, config=NodeConfig(replication=ReplicationConfig(max_unknown_feeds=cap))
        )
        mesh.follow(0, 1)
        mesh.follow(1, 0)
        leader = 0 if mesh.feed(0) < mesh.feed(1) else 1
        for who in AUTHORS:  # the leader keeps six feeds its peer has never heard of
            mesh.node(leader).set_contact(ContactAction.FOLLOW, who.feed_id, timestamp_ms=TS_MS)
        mesh.publish(leader, "hi")
        mesh.add_links([(0, 1)], LinkSpec())
        mesh.run_until_quiet(limit_s=30)
        return mesh

    small = pair(3)
    assert any(
        "node.max_unknown_feeds" in r for i in (0, 1) for r in misbehaved(small.node(i).events())
    )
    assert pair(10).clocks_agree()


# -- the flat-file store forgets peers for good ----------------------------------------------


def test_the_file_store_forgets_across_reopen_rebuild_and_compaction(tmp_path: Path) -> None:
    a, b, c = (PeerId(bytes([n]) * 32) for n in (1, 2, 3))
    with FileStore(tmp_path) as store:
        for peer in (a, b, c):
            store.set_peer_state(peer, bytes(500))
        store.forget_peer_state(b)
        store.set_peer_state(a, b"again")
        assert list(store.peers()) == [c, a]
        dead = store.dead_bytes()
        assert dead > 1000  # a's first record, b's and the record that forgot b
    with FileStore(tmp_path) as store:  # from the checkpoint
        assert list(store.peers()) == [c, a]
        assert store.peer_state(b) is None
    (tmp_path / "index.bin").unlink()
    with FileStore(tmp_path) as store:  # rebuilt from the log
        assert list(store.peers()) == [c, a]
        assert store.peer_state(b) is None
        assert store.dead_bytes() == dead
        assert list(store.verify_log()) == []  # `meshnode check` stays clean
        store.compact()
        assert store.dead_bytes() == 0
    with FileStore(tmp_path) as store:
        assert list(store.peers()) == [c, a]
        assert (store.peer_state(a), store.peer_state(b)) == (b"again", None)


# -- the operator's keys -----------------------------------------------------------------------


def test_the_config_keys_reach_the_core_and_are_checked() -> None:
    config = parse_config('[node]\nmax_unknown_feeds = 50000\npeer_memory_cap_bytes = "8MiB"')
    replication = node_config(config).replication
    assert (replication.max_unknown_feeds, replication.peer_memory_cap_bytes) == (50_000, 8 << 20)
    defaults = node_config(parse_config("")).replication
    assert defaults.max_unknown_feeds == MAX_UNKNOWN_FEEDS
    assert defaults.peer_memory_cap_bytes == 64 << 20
    with pytest.raises(ConfigError, match=r"node\.max_unknown_feeds: must be an integer <= "):
        parse_config("[node]\nmax_unknown_feeds = 2000000")
    with pytest.raises(ConfigError, match=r"node\.max_unknown_feeds: must be an integer >= 0"):
        parse_config("[node]\nmax_unknown_feeds = -1")
    with pytest.raises(ConfigError, match=r"node\.peer_memory_cap_bytes"):
        parse_config('[node]\npeer_memory_cap_bytes = "lots"')


def test_no_memory_is_kept_when_the_operator_says_none() -> None:
    store = CountingStore()
    node = make_node(store=store, peer_memory_cap_bytes=0)
    visit(node, stranger(1), 0.0, names=10)
    assert store.peer_writes == 0
    assert not_kept(node.events()) == []


# -- any frames at all ---------------------------------------------------------------------------

_CAP = 40
_KNOWN = [FeedId(who.feed_id) for who in [*AUTHORS, WANTED_LATER, FRIEND]]
_STRANGE = [FeedId(bytes([n]) * 32) for n in range(200, 206)]
_ENTRIES = [make_chain(who, 2) for who in (AUTHORS[0], WANTED_LATER, identity(70))]
_index = st.one_of(st.integers(0, 60), st.integers(0, (1 << 32) - 2))
_note = st.builds(
    Note,
    st.integers(0, 9),
    st.booleans(),
    st.sampled_from([0, 1, 3]),
    st.sampled_from([-1, 0, 2, 9]),
)


def _tags(peer: PeerId) -> st.SearchStrategy[list[int]]:
    salt = epoch_of(peer) + ME.feed_id
    ours = [feed_tag(f, salt) for f in _KNOWN]
    tag = st.one_of(st.sampled_from(ours), st.integers(0, (1 << 32) - 1))
    return st.sets(tag, max_size=30).map(sorted)


def _frames(peer: PeerId) -> st.SearchStrategy[bytes]:
    key = st.sampled_from([*_KNOWN, *_STRANGE]).map(bytes) | st.binary(min_size=32, max_size=32)
    note_part = st.tuples(_index, st.booleans(), _note).map(
        lambda t: encode_varint(make_ref(t[0], t[1])) + encode_note(t[2])
    )
    entry = st.sampled_from([e for chain in _ENTRIES for e in chain])
    return st.one_of(
        st.builds(encode_define, st.integers(0, 60), _tags(peer)),
        st.lists(st.tuples(_index, key), max_size=20).map(encode_define_key),
        st.lists(note_part, max_size=20).map(lambda p: bytes((FrameType.NOTES,)) + b"".join(p)),
        st.tuples(st.integers(0, 60), st.lists(_note, max_size=20)).map(
            lambda t: (
                bytes((FrameType.RUN,)) + encode_varint(t[0]) + b"".join(map(encode_note, t[1]))
            )
        ),
        st.lists(_index, max_size=20).map(lambda i: encode_indexes(FrameType.WANT_KEY, i)),
        entry.map(lambda e: encode_entry_frame(None, 0, e.raw)),
        st.tuples(st.integers(0, 20), entry).map(
            lambda t: encode_entry_frame(make_ref(t[0], False), t[1].seq, encode_short_entry(t[1]))
        ),
        st.binary(max_size=40),
    )


_PEER = stranger(7)


@settings(max_examples=60, deadline=None, database=None)
@given(frames=st.lists(_frames(_PEER), min_size=1, max_size=25))
def test_any_frames_keep_every_table_within_its_bound(frames: list[bytes]) -> None:
    node = make_node(max_unknown_feeds=_CAP, peer_memory_cap_bytes=1 << 20)
    s = meet(node, _PEER)
    limit = len(encode_peer_memory(s.memory)) + _CAP * 10 + len(_KNOWN) * 200
    for i, frame in enumerate(frames):
        node.receive_frame(_PEER, frame, now=1.0 + i)
        node.frames_to_send()
        node.handle_timer(2.0 + i)
        node.frames_to_send()
        if _PEER not in node.replicator.sessions:
            assert misbehaved(node.events())
            break
        check_bounds(node, s, _CAP)
        assert len(encode_peer_memory(s.memory)) <= limit
    node.disconnect(_PEER, now=100.0)
    stored = node.store.peer_state(_PEER)
    assert stored is None or len(stored) <= limit
    node.close()

"""Conformance checks every Store backend must pass (run by tests/unit/test_store_suite.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache

import pytest

from meshnode.codec.content import Contact, ContactAction, encode_contact
from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.core.feed import FeedHead
from meshnode.core.store import ForkRecord, Store
from meshnode.errors import LocalProtocolError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, MsgId, PeerId, Seq
from tests.fakes import TS_MS, identity, make_chain

__all__ = ["CHECKS", "MakeStore", "chain"]

MakeStore = Callable[[], Store]


@cache
def chain(n: int, count: int = 12) -> tuple[Entry, ...]:
    """POST entries 1..count of identity(n), built once per test session."""
    return tuple(make_chain(identity(n), count))


def _with_contacts(n: int, count: int, contact_seqs: set[int]) -> list[Entry]:
    who, out, previous = identity(n), [], None
    for seq in range(1, count + 1):
        if seq in contact_seqs:
            kind, content = (
                ContentType.CONTACT,
                encode_contact(
                    Contact(action=ContactAction.FOLLOW, target=identity(50 + seq).feed_id)
                ),
            )
        else:
            kind, content = ContentType.POST, f"post {seq}".encode()
        entry = create_entry(
            who,
            DEFAULT_NETWORK_KEY,
            seq=Seq(seq),
            previous=previous,
            timestamp_ms=TS_MS + seq,
            content_type=kind,
            content=content,
        )
        out.append(entry)
        previous = entry.id
    return out


def _fill(store: Store, *feeds: int) -> None:
    for n in feeds:
        for entry in chain(n):
            store.append(entry)


def check_empty(make_store: MakeStore) -> None:
    store = make_store()
    feed = identity(1).feed_id
    assert store.head(feed) is None
    assert store.latest_seq(feed) == 0
    assert store.entry_id(feed, Seq(1)) is None
    assert (store.feeds(), store.clock(), store.ranges(), store.forks()) == ([], {}, {}, [])
    assert store.stats().entries == 0
    assert len(store.epoch) == 8
    with pytest.raises(KeyError):
        store.get(feed, Seq(1))


def check_append_get_head(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1, 2)
    for n in (1, 2):
        entries = chain(n)
        feed = entries[0].author
        assert [store.get(feed, e.seq) for e in entries] == [e.raw for e in entries]
        assert [store.entry_id(feed, e.seq) for e in entries] == [e.id for e in entries]
        assert store.head(feed) == FeedHead(Seq(1), Seq(12), entries[-1].id)
        assert store.latest_seq(feed) == 12
    with pytest.raises(KeyError):
        store.get(chain(1)[0].author, Seq(13))
    with pytest.raises(KeyError):
        store.get(identity(3).feed_id, Seq(1))


def check_append_must_extend(make_store: MakeStore) -> None:
    store = make_store()
    entries = chain(1)
    store.append(entries[0])
    for wrong in (entries[0], entries[2]):
        with pytest.raises(LocalProtocolError):
            store.append(wrong)
    store.append(entries[1])
    assert store.latest_seq(entries[0].author) == 2


def check_first_entry_may_start_mid_feed(make_store: MakeStore) -> None:
    store = make_store()
    entries = chain(1)
    for entry in entries[5:]:
        store.append(entry)
    feed = entries[0].author
    assert store.ranges() == {feed: (Seq(6), Seq(12))}
    with pytest.raises(KeyError):
        store.get(feed, Seq(5))
    assert store.entry_id(feed, Seq(5)) is None


def check_clock_ranges_feeds(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1, 2)
    a, b = chain(1)[0].author, chain(2)[0].author
    store.append(chain(3)[0])
    c = chain(3)[0].author
    assert sorted(store.feeds()) == sorted([a, b, c])
    assert store.clock() == {a: 12, b: 12, c: 1}
    assert store.ranges() == {a: (1, 12), b: (1, 12), c: (1, 1)}


def check_evict(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1)
    entries = chain(1)
    feed = entries[0].author
    before = store.feed_bytes(feed)
    freed = store.evict(feed, Seq(5))
    assert freed == sum(len(e.raw) for e in entries[:4])
    assert store.feed_bytes(feed) == before - freed
    assert store.ranges()[feed] == (5, 12)
    with pytest.raises(KeyError):
        store.get(feed, Seq(4))
    assert store.get(feed, Seq(5)) == entries[4].raw
    assert store.evict(feed, Seq(3)) == 0
    assert store.evict(identity(9).feed_id, Seq(3)) == 0
    store.evict(feed, Seq(1000))  # never the latest
    assert store.head(feed) == FeedHead(Seq(12), Seq(12), entries[-1].id)
    assert store.stats().entries == 1
    store.append(chain(1, 13)[12])
    assert store.ranges()[feed] == (12, 13)


def check_restart(make_store: MakeStore) -> None:
    store = make_store()
    entries = chain(7, 40)
    feed, other = entries[0].author, chain(8)[0].author
    for entry in entries[5:10]:
        store.append(entry)
    store.append(chain(8)[0])
    # latest+1 is an append, not a restart; earlier seqs and feeds not held are refused too.
    for wrong in (entries[10], entries[9], entries[2], chain(9)[5]):
        with pytest.raises(LocalProtocolError):
            store.restart(wrong)
    assert store.ranges() == {feed: (6, 10), other: (1, 1)}
    assert store.restart(entries[29]) == sum(len(e.raw) for e in entries[5:10])
    assert store.head(feed) == FeedHead(Seq(30), Seq(30), entries[29].id)
    assert store.ranges() == {feed: (30, 30), other: (1, 1)}
    with pytest.raises(KeyError):
        store.get(feed, Seq(10))
    assert store.entry_id(feed, Seq(10)) is None
    assert store.get(feed, Seq(30)) == entries[29].raw
    assert store.feed_bytes(feed) == len(entries[29].raw)
    stats = store.stats()
    assert (stats.feeds, stats.entries) == (2, 2)
    assert stats.entry_bytes == len(entries[29].raw) + len(chain(8)[0].raw)
    with pytest.raises(LocalProtocolError):
        store.append(entries[31])
    for entry in entries[30:35]:  # the feed goes on from its new first entry
        store.append(entry)
    assert store.evict(feed, Seq(33)) == sum(len(e.raw) for e in entries[29:32])
    assert store.ranges()[feed] == (33, 35)
    assert store.restart(entries[39]) == sum(len(e.raw) for e in entries[32:35])
    assert store.head(feed) == FeedHead(Seq(40), Seq(40), entries[39].id)
    assert store.stats().entries == 2


def check_restart_forgets_old_contacts(make_store: MakeStore) -> None:
    store = make_store()
    entries = _with_contacts(5, 20, {2, 15, 18})
    feed = entries[0].author
    for entry in entries[:5]:
        store.append(entry)
    assert list(store.contacts()) == [(feed, 2)]
    store.restart(entries[14])
    assert list(store.contacts()) == [(feed, 15)]
    for entry in entries[15:18]:
        store.append(entry)
    assert list(store.contacts()) == [(feed, 15), (feed, 18)]


def check_contacts(make_store: MakeStore) -> None:
    store = make_store()
    entries = _with_contacts(4, 8, {2, 5, 7})
    for entry in entries:
        store.append(entry)
    feed = entries[0].author
    assert list(store.contacts()) == [(feed, 2), (feed, 5), (feed, 7)]
    store.evict(feed, Seq(4))
    assert list(store.contacts()) == [(feed, 5), (feed, 7)]


def check_forks(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1)
    other = make_chain(identity(1), 3, size=30)[2]
    fork = ForkRecord(feed=FeedId(other.author), seq=Seq(3), raw=other.raw)
    store.record_fork(fork)
    assert store.forks() == [fork]
    assert store.get(fork.feed, Seq(3)) == chain(1)[2].raw


def check_stats(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1, 2)
    live = sum(len(e.raw) for n in (1, 2) for e in chain(n))
    stats = store.stats()
    assert (stats.feeds, stats.entries, stats.entry_bytes) == (2, 24, live)
    assert stats.file_bytes >= live
    store.evict(chain(1)[0].author, Seq(3))
    assert store.stats().entry_bytes == live - len(chain(1)[0].raw) - len(chain(1)[1].raw)
    assert store.stats().entries == 22


def check_peer_state(make_store: MakeStore) -> None:
    store = make_store()
    peer = PeerId(b"\x07" * 32)
    assert store.peer_state(peer) is None
    store.set_peer_state(peer, b"one")
    other = PeerId(b"\x08" * 32)
    store.set_peer_state(other, b"x")
    store.set_peer_state(peer, b"two")
    assert store.peer_state(peer) == b"two"
    assert store.peer_state(other) == b"x"
    # The least recently set first, with what each takes (at least its state).
    assert list(store.peers()) == [other, peer]
    assert all(store.peers()[p] >= len(store.peer_state(p) or b"") for p in (other, peer))
    with pytest.raises(LocalProtocolError):
        store.set_peer_state(other, b"")  # empty is not a state: forgetting is explicit
    store.forget_peer_state(other)
    store.forget_peer_state(PeerId(b"\x09" * 32))  # never stored: nothing to do
    assert store.peer_state(other) is None
    assert list(store.peers()) == [peer]
    store.set_peer_state(other, b"back")
    assert list(store.peers()) == [peer, other]


def check_entry_id_is_hash(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 2)
    feed = chain(2)[0].author
    for seq in (1, 6, 12):
        assert store.entry_id(feed, Seq(seq)) == MsgId(
            hashlib.sha256(store.get(feed, Seq(seq))).digest()
        )


def check_flush_and_close(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 1)
    store.flush()
    store.close()


CHECKS: list[Callable[[MakeStore], None]] = [
    check_empty,
    check_append_get_head,
    check_append_must_extend,
    check_first_entry_may_start_mid_feed,
    check_clock_ranges_feeds,
    check_evict,
    check_restart,
    check_restart_forgets_old_contacts,
    check_contacts,
    check_forks,
    check_stats,
    check_peer_state,
    check_entry_id_is_hash,
    check_flush_and_close,
]

"""The mailbox: private entries outlive the caps of their feed for keep_days, within limits."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.content import ContactAction, PrivateInner, encode_private_inner, recipient_tag
from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.core.events import MailboxReleased
from meshnode.core.mailbox import DAY_MS, Mailbox, MailboxConfig
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node, NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.private import enc_keypair, seal
from meshnode.types import FeedId, MsgId, Seq
from tests.fakes import TS_MS, identity

ME, STRANGER, FRIEND, OTHER = identity(1), identity(2), identity(3), identity(4)
T0_MS = 1_800_000_000_000


@dataclass
class FakeClock:
    """Wall time in ms, moved by the test."""

    now_ms: int = T0_MS

    def __call__(self) -> int:
        return self.now_ms

    def advance_days(self, days: float) -> None:
        self.now_ms += int(days * DAY_MS)


def private_payload(author: Identity, to: Identity, text: str = "hello") -> bytes:
    inner = encode_private_inner(
        PrivateInner(
            content_type=ContentType.POST,
            recipient_tags=(recipient_tag(to.feed_id),),
            payload=text.encode(),
        )
    )
    recipient = enc_keypair(to.seed).public_key
    return seal(inner, [recipient], enc_keypair(author.seed).secret_key)


def chain(
    who: Identity, kinds: str, *, start: int = 1, previous: MsgId | None = None
) -> list[Entry]:
    """Entries of ``who``: "p" a private message to ME, "." a 100-byte public post."""
    out = []
    for i, kind in enumerate(kinds):
        if kind == "p":
            content_type, content = ContentType.PRIVATE, private_payload(who, ME)
        else:
            content_type, content = ContentType.POST, f"post {start + i}".ljust(100).encode()
        entry = create_entry(
            who,
            DEFAULT_NETWORK_KEY,
            seq=Seq(start + i),
            previous=previous,
            timestamp_ms=TS_MS + i,
            content_type=content_type,
            content=content,
        )
        out.append(entry)
        previous = entry.id
    return out


def capped_node(clock: FakeClock, mailbox: MailboxConfig | None = None, **policy: int) -> Node:
    """A node that keeps the last 3 entries of each followed feed (hop 1 is partial)."""
    settings: dict[str, int] = {"max_hops": 1, "full_hops": 0, "partial_entries": 3, **policy}
    config = NodeConfig(policy=PolicyConfig(**settings), mailbox=mailbox or MailboxConfig())
    node = Node(
        ME,
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        config=config,
        rng=random.Random(1),
        clock_ms=clock,
    )
    for other in (STRANGER, FRIEND, OTHER):
        node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS_MS)
    return node


def held(node: Node, feed: FeedId) -> tuple[int, int]:
    head = node.store.head(feed)
    assert head is not None
    return head.first, head.latest


def ingest(node: Node, entries: list[Entry]) -> None:
    for entry in entries:
        assert node.ingest(entry.raw).outcome.value == "added"


def test_capped_feed_keeps_a_private_entry_for_keep_days_then_drops_it() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    ingest(node, chain(STRANGER, ".p" + "." * 8))  # seq 2 is private, 10 entries
    assert held(node, STRANGER.feed_id) == (2, 10)  # seq 1 went; the floor is seq 2
    clock.advance_days(29.9)
    node.handle_timer(0.0)
    assert held(node, STRANGER.feed_id) == (2, 10)
    clock.advance_days(0.2)
    node.handle_timer(0.0)
    assert held(node, STRANGER.feed_id) == (8, 10)  # the caps apply again
    released = [e for e in node.events() if isinstance(e, MailboxReleased)]
    assert released == [MailboxReleased(feed=STRANGER.feed_id, seq=2, limit="keep_days")]
    assert node.mailbox.floor(STRANGER.feed_id) is None
    assert node.status()["mailbox"] == {
        "kept_entries": 0,
        "authors": 0,
        "held_bytes": 0,
        "max_bytes": 64 << 20,
        "author_max_bytes": 8 << 20,
        "keep_days": 30.0,
    }


def test_keep_days_counts_from_storing_not_the_author_claim() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    ingest(node, chain(STRANGER, "p"))  # claimed in 2023, stored "now"
    clock.advance_days(20)
    ingest(node, chain(FRIEND, "p...."))
    clock.advance_days(15)  # the stranger's is 35 days old, the friend's 15
    node.expire_mailbox()
    assert node.mailbox.floor(STRANGER.feed_id) is None
    assert node.mailbox.floor(FRIEND.feed_id) == 1
    assert held(node, FRIEND.feed_id) == (1, 5)


def test_later_private_entries_move_the_floor_up_as_earlier_ones_expire() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    entries = chain(STRANGER, "p....")
    ingest(node, entries)
    clock.advance_days(10)
    entries += chain(STRANGER, "p....", start=6, previous=entries[-1].id)
    ingest(node, entries[5:])
    assert held(node, STRANGER.feed_id) == (1, 10)
    clock.advance_days(25)
    node.expire_mailbox()
    assert held(node, STRANGER.feed_id) == (6, 10)
    assert node.mailbox.private_seqs(STRANGER.feed_id) == [6]


def test_per_author_share_holds_against_a_flood_from_one_stranger() -> None:
    clock = FakeClock()
    # 40 KiB in all, 10 KiB per author (share 4): a private entry is ~300 bytes.
    node = capped_node(clock, MailboxConfig(max_bytes=40 << 10, author_share=4))
    ingest(node, chain(FRIEND, "p..."))
    flood = chain(STRANGER, "p.." * 100)
    ingest(node, flood)
    assert node.mailbox.charge(STRANGER.feed_id) <= 10 << 10
    assert node.mailbox.charge(FRIEND.feed_id) > 0
    assert node.mailbox.floor(FRIEND.feed_id) == 1  # the friend's message is untouched
    first, latest = held(node, STRANGER.feed_id)
    assert latest == 300
    held_bytes = sum(len(e.raw) for e in flood[first - 1 :])
    assert held_bytes <= (10 << 10) + 3 * 400  # the share, plus the cap's own 3 entries
    limits = {e.limit for e in node.events() if isinstance(e, MailboxReleased)}
    assert limits == {"author_share"}


def test_max_bytes_releases_the_oldest_stored_first() -> None:
    clock = FakeClock()
    node = capped_node(clock, MailboxConfig(max_bytes=1800, author_share=1))
    ingest(node, chain(FRIEND, "p..."))
    clock.advance_days(1)
    ingest(node, chain(OTHER, "p..."))
    clock.advance_days(1)
    ingest(node, chain(STRANGER, "p..."))  # over 1800 bytes in all: FRIEND's goes
    assert node.mailbox.floor(FRIEND.feed_id) is None
    assert held(node, FRIEND.feed_id) == (2, 4)
    assert node.mailbox.floor(OTHER.feed_id) == 1
    assert node.mailbox.floor(STRANGER.feed_id) == 1
    total = sum(node.mailbox.charge(f.feed_id) for f in (FRIEND, OTHER, STRANGER))
    assert total <= 1800
    events = [e for e in node.events() if isinstance(e, MailboxReleased)]
    assert events == [MailboxReleased(feed=FRIEND.feed_id, seq=1, limit="max_bytes")]


def test_our_own_feed_is_not_charged() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    node.publish(ContentType.PRIVATE, private_payload(ME, FRIEND), timestamp_ms=TS_MS)
    assert node.mailbox.status()["kept_entries"] == 0


def test_the_index_survives_a_restart() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    ingest(node, chain(STRANGER, ".p.."))
    data = node.mailbox.encode_index()
    again = Mailbox(MailboxConfig())
    again.load_index(data)
    assert again.encode_index() == data
    assert again.floor(STRANGER.feed_id) == 2
    assert again.charge(STRANGER.feed_id) == node.mailbox.charge(STRANGER.feed_id)
    clock.advance_days(31)
    assert [r.limit for r in again.expire(clock())] == ["keep_days"]


def test_an_index_older_than_the_store_is_reconciled_with_it() -> None:
    clock = FakeClock()
    node = capped_node(clock)
    entries = chain(STRANGER, ".p..p..")
    ingest(node, entries)
    ingest(node, chain(FRIEND, "p..."))
    again = Mailbox(MailboxConfig())
    again.load_index(node.mailbox.encode_index())
    ranges = {STRANGER.feed_id: (Seq(3), Seq(5))}  # the friend's feed is gone
    again.reconcile(ranges)
    assert again.private_seqs(STRANGER.feed_id) == [5]
    assert again.floor(FRIEND.feed_id) is None
    sizes = [len(e.raw) for e in entries]
    assert again.charge(STRANGER.feed_id) == sizes[4]
    assert again.charge_total() == sizes[4]


def test_a_damaged_index_is_refused_with_decode_error() -> None:
    box = Mailbox(MailboxConfig())
    for data in (b"", b"[]", b'{"version": 1, "feeds": {"x": 1}}', b'{"version": 9}'):
        with pytest.raises(DecodeError, match="mailbox index"):
            box.load_index(data)


def test_keep_days_zero_turns_the_mailbox_off() -> None:
    clock = FakeClock()
    node = capped_node(clock, MailboxConfig(keep_days=0))
    ingest(node, chain(STRANGER, "p....."))
    assert held(node, STRANGER.feed_id) == (4, 6)


_FEEDS = [FeedId(bytes([n]) * 32) for n in range(1, 5)]
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["store", "private", "evict", "expire"]),
        st.integers(0, len(_FEEDS) - 1),
        st.integers(1, 900),  # bytes, or days / 10 for expire, or how many to evict
    ),
    max_size=80,
)


@given(steps=_STEPS)
def test_the_limits_hold_and_the_books_balance_whatever_happens(
    steps: list[tuple[str, int, int]],
) -> None:
    config = MailboxConfig(keep_days=3, max_bytes=4000, author_share=3)
    box = Mailbox(config)
    latest = dict.fromkeys(_FEEDS, 0)
    first = dict.fromkeys(_FEEDS, 1)
    now_ms = T0_MS
    for kind, i, n in steps:
        feed = _FEEDS[i]
        if kind == "expire":
            now_ms += n * DAY_MS // 10
            box.expire(now_ms)
        elif kind == "evict":
            floor = box.floor(feed)
            below = Seq(min(first[feed] + n, latest[feed], floor or latest[feed]))
            first[feed] = max(first[feed], below)
            box.evicted(feed, below)
        else:
            latest[feed] += 1
            box.stored(feed, Seq(latest[feed]), n, private=kind == "private", now_ms=now_ms)
            assert box.charge(feed) <= config.author_max_bytes
            assert box.charge_total() <= config.max_bytes
        for f in _FEEDS:
            floor = box.floor(f)
            assert floor is None or first[f] <= floor <= latest[f]
            assert (box.charge(f) > 0) == (floor is not None)
            assert all(floor is not None and s >= floor for s in box.private_seqs(f))
        assert box.charge_total() == sum(box.charge(f) for f in _FEEDS)
        assert all(now_ms - k.stored_ms <= config.keep_ms for _, k in box.kept())
    again = Mailbox(config)
    again.load_index(box.encode_index())
    assert again.encode_index() == box.encode_index()


def test_the_global_cap_evicts_around_kept_entries_and_says_when_it_cannot() -> None:
    clock = FakeClock()
    node = capped_node(clock, global_cap_bytes=2500, partial_entries=1000)
    ingest(node, chain(FRIEND, "." * 10))
    ingest(node, chain(STRANGER, "p" + "." * 19))  # ~3.2 KB: over the cap on its own
    # The others' entries went (all but the latest); the stranger's are held back by its
    # private one.
    assert held(node, STRANGER.feed_id) == (1, 20)
    assert held(node, FRIEND.feed_id) == (10, 10)
    over = [e for e in node.events() if type(e).__name__ == "StoreOverCap"]
    assert over  # over the cap by what the mailbox keeps, and it says so
    clock.advance_days(31)
    node.expire_mailbox()
    assert node.store.stats().entry_bytes <= 2500

"""The thread index: replies find their posts, the index stays bounded, damage is skipped."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.content import ContactAction, Reply, encode_reply
from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.core.threads import MAX_THREAD, ThreadIndex
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import MsgId, Seq
from tests.fakes import TS_MS, identity

BOX = identity(1)
PEOPLE = [identity(n) for n in range(2, 6)]


class Writer:
    """Chains of entries for a few people, held in one node."""

    def __init__(self) -> None:
        self.node = Node(
            BOX, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
        )
        for who in PEOPLE:
            self.node.set_contact(ContactAction.FOLLOW, who.feed_id, timestamp_ms=TS_MS)
        self.heads: dict[int, tuple[int, MsgId | None]] = {}
        self.clock = TS_MS

    def write(self, who: int, parent: MsgId | None = None, text: str = "hi") -> Entry:
        seq, previous = self.heads.get(who, (0, None))
        self.clock += 1
        if parent is None:
            kind, content = ContentType.POST, text.encode()
        else:
            kind, content = ContentType.REPLY, encode_reply(Reply(parent=parent, text=text))
        entry = create_entry(
            PEOPLE[who],
            DEFAULT_NETWORK_KEY,
            seq=Seq(seq + 1),
            previous=previous,
            timestamp_ms=self.clock,
            content_type=kind,
            content=content,
        )
        self.heads[who] = (seq + 1, entry.id)
        assert self.node.ingest(entry.raw).entry is not None
        return entry


def test_a_thread_is_its_first_post_then_every_reply_oldest_first() -> None:
    w, index = Writer(), ThreadIndex()
    root = w.write(0, text="first")
    a = w.write(1, root.id, "a answers")
    b = w.write(2, a.id, "b answers a")
    other = w.write(3, text="another thread")
    c = w.write(0, root.id, "c answers")
    for entry in (root, a, b, other, c):
        index.add(entry)
    want = [root.id, a.id, b.id, c.id]
    for start in want:
        assert [e.id for e in index.thread(w.node, start)] == want
    assert [e.id for e in index.thread(w.node, other.id)] == [other.id]
    assert index.reply_count(root.id) == 2
    assert index.reply_count(a.id) == 1
    assert index.reply_count(other.id) == 0


def test_a_reply_whose_post_the_box_lacks_starts_its_own_thread() -> None:
    w, index = Writer(), ThreadIndex()
    lost = MsgId(bytes(32))
    a = w.write(1, lost, "answers something never seen")
    b = w.write(2, a.id, "and this answers that")
    index.add(a)
    index.add(b)
    assert [e.id for e in index.thread(w.node, b.id)] == [a.id, b.id]


def test_the_index_forgets_its_oldest_entries_past_its_limit() -> None:
    w, index = Writer(), ThreadIndex(limit=3)
    root = w.write(0)
    replies = [w.write(1, root.id, f"r{i}") for i in range(4)]
    for entry in (root, *replies):
        index.add(entry)
    assert len(index) == 3
    assert index.locate(root.id) is None
    assert index.locate(replies[0].id) is None
    assert index.reply_count(root.id) == 3  # the replies still held still answer it
    index.add(w.write(2))
    index.add(w.write(2))
    index.add(w.write(2))
    assert index.reply_count(root.id) == 0  # none left, and no empty list kept for it
    assert root.id not in index._replies


def test_contacts_and_malformed_replies_are_not_indexed() -> None:
    w, index = Writer(), ThreadIndex()
    contact = w.node.set_contact(ContactAction.FOLLOW, PEOPLE[0].feed_id, timestamp_ms=TS_MS)
    index.add(contact)
    seq, previous = w.heads.get(1, (0, None))
    broken = create_entry(
        PEOPLE[1],
        DEFAULT_NETWORK_KEY,
        seq=Seq(seq + 1),
        previous=previous,
        timestamp_ms=TS_MS,
        content_type=ContentType.REPLY,
        content=b"short",
    )
    index.add(broken)
    assert len(index) == 0


def test_a_thread_is_capped() -> None:
    w, index = Writer(), ThreadIndex()
    root = w.write(0)
    index.add(root)
    for i in range(MAX_THREAD + 20):
        index.add(w.write(1 + i % 3, root.id, str(i)))
    assert len(index.thread(w.node, root.id)) == MAX_THREAD


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 30)), min_size=1, max_size=30))
def test_every_entry_of_a_thread_leads_back_to_the_same_thread(
    plan: list[tuple[int, int]],
) -> None:
    w, index = Writer(), ThreadIndex()
    written: list[Entry] = []
    for who, answer in plan:
        parent = written[answer].id if 0 <= answer < len(written) else None
        written.append(w.write(who, parent))
        index.add(written[-1])
    for entry in written:
        thread = index.thread(w.node, entry.id)
        assert entry.id in [e.id for e in thread]
        assert [e.id for e in index.thread(w.node, thread[0].id)] == [e.id for e in thread]
        assert len({e.id for e in thread}) == len(thread)

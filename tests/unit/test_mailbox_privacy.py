"""A box holding many private messages cannot tell who writes to whom from its own state.

Two worlds hold the same people writing the same number of messages of the same sizes at
the same times, to different recipients. Everything the box keeps or says about them
outside the ciphertext (its store's files and records with the encrypted content, and
what is derived from it, masked; the mailbox index; its events; its status) must be the
same in both, and the ciphertext's recipient slots must show nothing a test can find.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from meshnode.codec.content import ContactAction, EncKey, encode_enckey
from meshnode.codec.message import ContentType, Entry, create_entry, decode_entry
from meshnode.core.mailbox import DAY_MS, MailboxConfig
from meshnode.core.node import Node, NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.private import (
    EPK_BYTES,
    SLOT_BYTES,
    PrivateMessageError,
    enc_keypair,
    open_private,
    seal,
)
from meshnode.store.flatfile import FileStore
from meshnode.types import MsgId, Seq
from tests.fakes import identity
from tests.unit.test_mailbox import FakeClock

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

PEOPLE = [identity(n) for n in range(11, 17)]  # six people
BOX = identity(30)
MESSAGES = 120
T0_MS = 1_800_000_000_000


@dataclass(frozen=True)
class Planned:
    """What both worlds share about one message."""

    author: int
    recipients: int  # how many
    text_bytes: int
    at_ms: int


def plan() -> list[Planned]:
    rng = random.Random(5)
    return [
        Planned(
            author=rng.randrange(len(PEOPLE)),
            recipients=rng.choice((1, 1, 1, 2, 3)),
            text_bytes=rng.randrange(10, 120),
            at_ms=T0_MS + i * 3_600_000,
        )
        for i in range(MESSAGES)
    ]


def enc_pk(who: Identity) -> bytes:
    return enc_keypair(who.seed).public_key


def inner(tags: list[bytes], text_bytes: int) -> bytes:
    body = ("x" * text_bytes).encode()
    return bytes((ContentType.POST, len(tags))) + b"".join(tags) + body


def world_entries(seed: int) -> tuple[list[Entry], list[list[int]]]:
    """Every person's ENCKEY, then the planned messages to recipients drawn with ``seed``."""
    rng = random.Random(seed)
    heads: dict[int, Entry] = {}
    out: list[Entry] = []

    def append(who: int, content_type: int, content: bytes, at_ms: int) -> Entry:
        head = heads.get(who)
        entry = create_entry(
            PEOPLE[who],
            DEFAULT_NETWORK_KEY,
            seq=Seq(head.seq + 1 if head else 1),
            previous=MsgId(head.id) if head else None,
            timestamp_ms=at_ms,
            content_type=content_type,
            content=content,
        )
        heads[who] = entry
        out.append(entry)
        return entry

    for who, person in enumerate(PEOPLE):
        enckey = EncKey(key=enc_pk(person), homes=(BOX.feed_id,))
        append(who, ContentType.ENCKEY, encode_enckey(enckey), T0_MS)
    chosen = []
    for p in plan():
        others = [i for i in range(len(PEOPLE)) if i != p.author]
        to = rng.sample(others, p.recipients)
        chosen.append(to)
        payload = seal(
            inner([PEOPLE[i].feed_id[:8] for i in to], p.text_bytes),
            [enc_pk(PEOPLE[i]) for i in to],
            enc_keypair(PEOPLE[p.author].seed).secret_key,
            ephemeral_sk=rng.randbytes(32),
        )
        append(p.author, ContentType.PRIVATE, payload, p.at_ms)
        append(p.author, ContentType.POST, b"a public post of fixed size", p.at_ms)
    return out, chosen


@dataclass
class BoxView:
    """Everything the box keeps or says, with ciphertext and what derives from it masked."""

    status: dict[str, object]
    index: bytes
    events: list[str]
    files: list[tuple[str, int]]
    records: Sequence[tuple[object, ...]]
    entries: list[Entry]


def run_box(tmp_path: Path, entries: list[Entry]) -> BoxView:
    clock = FakeClock(now_ms=T0_MS)
    config = NodeConfig(
        policy=PolicyConfig(max_hops=1, full_hops=0, partial_entries=5),
        mailbox=MailboxConfig(keep_days=2, max_bytes=1 << 20, author_share=4),
    )
    store = FileStore(tmp_path / "store")
    node = Node(
        BOX,
        network_key=DEFAULT_NETWORK_KEY,
        store=store,
        config=config,
        rng=random.Random(1),
        clock_ms=clock,
    )
    for person in PEOPLE:
        node.set_contact(ContactAction.FOLLOW, person.feed_id, timestamp_ms=T0_MS)
    events: list[str] = []
    for entry in entries:
        clock.now_ms = max(clock.now_ms, entry.timestamp_ms)
        assert node.ingest(entry.raw).outcome.value == "added"
        node.handle_timer(0.0)
        events += [repr(e) for e in node.events()]
    clock.now_ms += 3 * DAY_MS
    node.expire_mailbox()
    events += [repr(e) for e in node.events()]
    status = node.status()
    status.pop("id")  # the box's own id is the same; its own feed's entries are not
    held = [
        decode_entry(node.store.get(f, Seq(s)), max_content_bytes=1 << 16)
        for f, (a, b) in sorted(node.store.ranges().items())
        if f != BOX.feed_id
        for s in range(a, b + 1)
    ]
    records = [
        (e.author, e.seq, e.timestamp_ms, e.content_type, e.compressed, len(e.content), len(e.raw))
        for e in held
    ]
    index = node.mailbox.encode_index()
    node.close()
    files = sorted(
        (str(p.relative_to(tmp_path)), p.stat().st_size)
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    return BoxView(status, index, events, files, records, held)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[BoxView, BoxView, list[list[int]]]:
    one, chosen_one = world_entries(seed=1)
    two, chosen_two = world_entries(seed=2)
    assert chosen_one != chosen_two  # the worlds differ in who writes to whom
    view_one = run_box(tmp_path_factory.mktemp("one"), one)
    view_two = run_box(tmp_path_factory.mktemp("two"), two)
    return view_one, view_two, chosen_one


def test_the_box_state_is_the_same_whoever_the_messages_are_for(
    worlds: tuple[BoxView, BoxView, list[list[int]]],
) -> None:
    one, two, _ = worlds
    assert one.records == two.records
    assert one.index == two.index
    assert one.events == two.events
    assert one.status == two.status
    assert one.files == two.files
    # The run did exercise the mailbox: entries were kept past the caps, then released.
    assert any("MailboxReleased" in e for e in one.events)
    entries = one.status["entries"]
    assert isinstance(entries, int)
    assert entries > len(PEOPLE) * 5


def test_the_box_and_a_stranger_open_none_of_them(
    worlds: tuple[BoxView, BoxView, list[list[int]]],
) -> None:
    one, _, _ = worlds
    private = [e for e in one.entries if e.content_type == ContentType.PRIVATE]
    assert private
    for key in (enc_keypair(BOX.seed).secret_key, enc_keypair(identity(40).seed).secret_key):
        for entry in private:
            with pytest.raises(PrivateMessageError, match="not addressed to this key"):
                open_private(entry.plain_content(1 << 16), key)


def _slots(entry: Entry, n: int) -> list[bytes]:
    payload = entry.plain_content(1 << 16)
    return [
        payload[EPK_BYTES + SLOT_BYTES * i : EPK_BYTES + SLOT_BYTES * (i + 1)] for i in range(n)
    ]


def test_the_slots_carry_nothing_that_points_at_a_recipient() -> None:
    entries, chosen = world_entries(seed=1)
    private = [e for e in entries if e.content_type == ContentType.PRIVATE]
    names = [p.feed_id for p in PEOPLE] + [enc_pk(p) for p in PEOPLE]
    windows = {name[i : i + 4] for name in names for i in range(len(name) - 3)}
    by_recipient: dict[int, list[bytes]] = {}
    for entry, to in zip(private, chosen, strict=True):
        slots = _slots(entry, len(to))
        for slot in slots:
            # No id, tag or key of anyone, not even 4 bytes of one, appears in a slot.
            assert not any(slot[i : i + 4] in windows for i in range(len(slot) - 3))
        by_recipient.setdefault(to[0], []).append(slots[0])
    for slots in by_recipient.values():
        assert len(slots) >= 3
        # No byte position is fixed among the slots sealed to one recipient...
        for i in range(SLOT_BYTES):
            assert len({s[i] for s in slots}) > 1
        # ...and two such slots agree at the same position no more than random bytes do.
        for a, b in itertools.pairwise(slots):
            assert sum(x == y for x, y in zip(a, b, strict=True)) <= 4

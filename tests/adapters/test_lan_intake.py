"""A LAN sync whose signatures are checked by worker processes stores exactly what a sync
checked on one thread stores, forged and forked entries mixed in: two services over real
loopback TCP, real worker processes."""

from __future__ import annotations

import random

import pytest

from meshnode.codec.content import ContactAction
from meshnode.codec.message import Entry, decode_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import links as links_module
from meshnode.daemon.checker import START_ENTRIES
from meshnode.host.address import PeerAddress
from meshnode.host.verify import make_verifier
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, PeerId, Seq
from tests.adapters.test_tcp import LOCAL, port_of, run, running, until
from tests.fakes import TS_MS, identity, make_chain

pytestmark = pytest.mark.integration

SENDER, RECEIVER = identity(81), identity(82)
WHOLE = [identity(83 + n) for n in range(4)]  # valid chains, pushed in full
FORGED, FORKED = identity(90), identity(91)
PER_FEED = 400
FORGED_AT = 20  # that entry's content is altered after signing; later ones chain on it
HELD = 5  # the receiver holds these of FORKED's real chain; the sender holds another chain


def _forged_chain() -> list[Entry]:
    good = make_chain(FORGED, FORGED_AT)
    bad = good[-1].raw.replace(b"post", b"pose")
    forged = decode_entry(bad)
    return [*good[:-1], forged, *make_chain(FORGED, 20, start=FORGED_AT + 1, previous=forged.id)]


CHAINS = {who.feed_id: make_chain(who, PER_FEED) for who in WHOLE}
SENT = {**CHAINS, FORGED.feed_id: _forged_chain(), FORKED.feed_id: make_chain(FORKED, 30, size=26)}
FEEDS = list(SENT)


def _node(who: int, threads: int) -> Node:
    node = Node(
        identity(who),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(5),
        verifier=make_verifier(threads),
    )
    for feed in FEEDS:
        node.set_contact(ContactAction.FOLLOW, feed, timestamp_ms=TS_MS)
    return node


def _sync(threads: int) -> tuple[dict[FeedId, list[bytes]], int]:
    """Sync a fresh receiver checking on ``threads``; its feeds, and the batches its
    workers checked."""
    sender, receiver = _node(81, 1), _node(82, threads)
    for chain in SENT.values():
        for entry in chain:
            sender.store.append(entry)  # as they are: nothing checks them on this side
    for entry in make_chain(FORKED, HELD):
        receiver.ingest(entry.raw)
    batches = 0

    async def scenario() -> None:
        nonlocal batches
        async with running(sender, SENDER) as sa:
            peer = PeerAddress(host=LOCAL, port=port_of(sa))
            async with running(receiver, RECEIVER, peers=(peer,)) as sb:
                pool = sb.table.verify_pool
                assert (pool is None) == (threads == 1)
                if pool is not None:  # started before the stream comes, so it takes part
                    pool.check([SENT[FEEDS[0]][0].raw] * START_ENTRIES)
                    await until(lambda: pool.ready)
                whole = [who.feed_id for who in WHOLE]
                # The sender is dropped for each bad entry and dialed again once its ban
                # ends, until every valid entry is in and it was dropped a few times.
                await until(
                    lambda: (
                        all(receiver.store.latest_seq(f) == PER_FEED for f in whole)
                        and sb.table.offences(PeerId(SENDER.feed_id)) >= 3
                    ),
                    timeout_s=60,
                )
                batches = 0 if pool is None else pool.batches

    run(scenario())
    store = receiver.store
    held = {
        f: [store.get(f, Seq(s)) for s in range(a, b + 1)] for f, (a, b) in store.ranges().items()
    }
    return held, batches


def test_a_sync_checked_by_workers_stores_what_one_thread_stores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(links_module, "_BAN_S", (0.05, 0.2))
    one, _ = _sync(1)
    pooled, batches = _sync(2)
    assert batches > 0
    assert pooled == one
    for who in WHOLE:
        assert one[who.feed_id] == [e.raw for e in CHAINS[who.feed_id]]
    assert len(one[FORGED.feed_id]) == FORGED_AT - 1
    assert one[FORKED.feed_id] == [e.raw for e in make_chain(FORKED, HELD)]

"""Every eager/lazy transition of the EBT rules, on a diamond: 3 -> {1, 2} -> 0."""

from __future__ import annotations

from meshnode.codec.frame import FrameType
from meshnode.codec.varint import encode_varint
from meshnode.core.clocks import Note, encode_note
from meshnode.core.node import NodeConfig
from meshnode.core.replication import ReplicationConfig
from meshnode.sim.mesh import Mesh
from meshnode.types import FeedId, PeerId
from tests.fakes import everyone_follows


def diamond(**replication: float) -> Mesh:
    config = NodeConfig(replication=ReplicationConfig(**replication))  # type: ignore[arg-type]
    mesh = Mesh(4, seed=21, config=config)
    everyone_follows(mesh, 4)
    mesh.add_links([(3, 1), (3, 2), (1, 0), (2, 0)])
    mesh.run_until_quiet(limit_s=60)
    assert mesh.clocks_agree()
    return mesh


def eager_peers(mesh: Mesh, i: int, feed: FeedId) -> list[int]:
    sessions = mesh.node(i).replicator.sessions
    return sorted(mesh.by_peer[p] for p, s in sessions.items() if feed in s.rx)


def test_exactly_one_eager_peer_per_feed() -> None:
    mesh = diamond()
    assert len(eager_peers(mesh, 0, mesh.feed(3))) == 1
    before = mesh.traffic().entries
    mesh.publish(3, "one copy each")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.traffic().entries - before == 3  # to 1, to 2, and once to 0


def test_duplicate_from_eager_peer_turns_it_lazy() -> None:
    mesh = diamond()
    feed = mesh.feed(3)
    for middle in (1, 2):  # both middle nodes take feed 3 straight from its author
        r = mesh.node(middle).replicator
        r._set_upstream(feed, r.sessions[PeerId(feed)])
        mesh._pump(middle)
    replicator = mesh.node(0).replicator
    up = replicator.upstream[feed]
    other = next(p for p in replicator.sessions if p != up)
    # Ask the other peer to push too, as a second eager parent would.
    replicator.sessions[other].rx.add(feed)
    replicator._queue_note(replicator.sessions[other], feed, urgent=True)
    mesh._pump(0)
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.publish(3, "two parents push this")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert len(eager_peers(mesh, 0, feed)) == 1
    before = mesh.traffic().entries
    mesh.publish(3, "now only one does")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.traffic().entries - before == 3  # 3 -> 1, 3 -> 2, one of them -> 0
    assert mesh.node(0).store.latest_seq(feed) == 5


def test_note_about_missing_entry_makes_lazy_peer_eager_when_upstream_cannot_serve() -> None:
    mesh = diamond(note_delay_s=0.5, stall_timeout_s=30)
    feed = mesh.feed(3)
    up = mesh.by_peer[mesh.node(0).replicator.upstream[feed]]
    other = 3 - up  # 1 <-> 2
    mesh.cut(3, up)  # the upstream hears nothing new
    mesh.run_until_quiet(limit_s=mesh.now + 5)
    mesh.publish(3, "only the other side has this")
    start = mesh.now
    assert mesh.run_until(lambda: mesh.node(0).store.latest_seq(feed) == 4, start + 30)
    assert mesh.now - start < 10  # short waits, not the 30 s stall timeout
    assert mesh.by_peer[mesh.node(0).replicator.upstream[feed]] == other


def test_stalled_upstream_is_replaced_after_timeout() -> None:
    mesh = diamond(stall_timeout_s=4.0)
    feed = mesh.feed(3)
    node = mesh.node(0)
    replicator = node.replicator
    up = replicator.upstream[feed]
    other = next(p for p in replicator.sessions if p != up)
    latest = node.store.latest_seq(feed)
    # The upstream claims an entry it never sends; the other peer claims it too.
    replicator.sessions[up].memory.remote[feed] = Note(latest + 1, False)
    ref = replicator._ref(replicator.sessions[other], feed) ^ 1  # as the peer names it
    frame = bytes((FrameType.NOTES,)) + encode_varint(ref) + encode_note(Note(latest + 1, True))
    node.receive_frame(other, frame, now=mesh.now)
    assert replicator.upstream[feed] == up
    due = node.next_deadline()
    assert due is not None
    assert due >= mesh.now + 3.9
    node.handle_timer(mesh.now + 4.0)
    assert replicator.upstream[feed] == other
    assert feed in replicator.sessions[other].rx
    assert feed not in replicator.sessions[up].rx


def test_losing_the_upstream_reroutes_to_the_peer_with_most() -> None:
    mesh = diamond()
    feed = mesh.feed(3)
    up = mesh.by_peer[mesh.node(0).replicator.upstream[feed]]
    mesh.kill(up)
    assert eager_peers(mesh, 0, feed) == [3 - up]
    mesh.publish(3, "after the loss")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.node(0).store.latest_seq(feed) == 4


def test_lazy_peer_gets_a_note_not_the_entry() -> None:
    mesh = diamond()
    feed = mesh.feed(0)
    replicator = mesh.node(1).replicator
    # Node 1 gets node 0's entries from 0 directly; node 3 is lazy toward 1 for feed 0
    # or gets it from 1; either way 3 never receives feed 0 twice.
    before = mesh.traffic().entries
    mesh.publish(0, "from the edge")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.traffic().entries - before == 3
    assert mesh.clocks_agree()
    assert replicator.upstream[feed] == PeerId(mesh.feed(0))

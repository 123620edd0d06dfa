"""Nodes that want a feed and can reach it must converge (stale memory, policy flips)."""

from __future__ import annotations

from meshnode.codec.content import ContactAction
from meshnode.core.events import PeerMisbehaved
from meshnode.sim.mesh import LinkSpec, Mesh
from meshnode.types import PeerId, Seq
from tests.fakes import everyone_follows


def test_crash_with_stale_peer_memory_does_not_starve_a_feed() -> None:
    # A is the author; K reaches A through U (and, for a while, through O).
    a, u, o, k = 0, 1, 2, 3
    mesh = Mesh(4, seed=31)
    everyone_follows(mesh, len(mesh.nodes))
    feed = mesh.feed(a)
    mesh.add_links([(a, u), (u, k)])
    mesh.run_until_quiet(limit_s=30)
    mesh.cut(u, k)
    mesh.mend(u, k)  # K saves its memory of U: "I told U: eager, at seq L"
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    held = mesh.node(k).store.latest_seq(feed)
    mesh.add_links([(a, o), (o, k)])
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.cut(a, u)
    mesh.publish(a, "only O hears this")
    replicator = mesh.node(k).replicator
    assert mesh.run_until(
        lambda: replicator.upstream[feed] == PeerId(mesh.feed(o)), limit_s=mesh.now + 20
    )
    # K has told U "lazy, at seq L"; U records that. K crashes before it saves anything.
    k_at_u = mesh.node(u).replicator.sessions[PeerId(mesh.feed(k))]
    assert mesh.run_until(lambda: k_at_u.memory.remote[feed].lazy, limit_s=mesh.now + 1)
    mesh.kill(k)
    mesh.cut(o, k)
    mesh.mend(a, u)
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    assert mesh.node(u).store.latest_seq(feed) == held + 1
    mesh.restart(k)  # K's stale memory says U knows "eager, L": the eager note is skipped
    assert mesh.run_until(
        lambda: mesh.node(k).store.latest_seq(feed) == held + 1, limit_s=mesh.now + 60
    )


def test_follow_after_block_resumes_replication() -> None:
    mesh = Mesh(2, seed=0)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=30)
    mesh.node(0).set_contact(ContactAction.BLOCK, mesh.feed(1), timestamp_ms=0)
    mesh._pump(0)  # node 1 hears "not replicated" and stops pushing feed 1
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.follow(0, 1)  # unblock by following again: node 0 wants feed 1 once more
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    assert mesh.node(0).scope(mesh.feed(1)) is not None
    mesh.publish(1, "after the re-follow")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(0).store.latest_seq(mesh.feed(1)) == mesh.node(1).store.latest_seq(
        mesh.feed(1)
    )


def test_peer_that_forgot_us_still_gets_pushes() -> None:
    mesh = Mesh(3, seed=0)
    leader, follower, author = sorted(range(3), key=mesh.feed)
    mesh.follow(leader, follower)
    mesh.follow(follower, leader)
    mesh.follow(author, leader)
    mesh.add_links([(leader, follower), (leader, author)])
    mesh.run_until_quiet(limit_s=30)
    mesh.publish(author, "x1")
    mesh.follow(follower, author)  # the follower names the author's feed in its own table
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.follow(leader, author)  # the leader now refers to it by the follower's index
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    feed = mesh.feed(author)
    assert mesh.node(follower).store.latest_seq(feed) == 2
    mesh.kill(follower)  # a crash: the follower never saved its memory of the leader
    mesh.restart(follower)  # the leader's HELLO check fails: _forget, then a full clock
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    for k in range(3):
        mesh.publish(author, f"after {k}")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(follower).store.latest_seq(feed) == 5  # stuck at 2 today


def test_frames_from_previous_session_do_not_get_an_honest_peer_dropped() -> None:
    # A datagram link flaps while the first session's HELLO/DEFINE/RUN are in the air;
    # node 1's table changes between its two sessions (it blocks node 0).
    mesh = Mesh(3, seed=3)
    everyone_follows(mesh, len(mesh.nodes))
    for k in range(3):
        mesh.publish(0, f"p{k}")
    mesh.add_links([(0, 1)], LinkSpec(reliable=False))
    mesh.node(1).set_contact(ContactAction.BLOCK, mesh.feed(0), timestamp_ms=0)
    mesh._pump(1)
    mesh.cut(0, 1)
    mesh.mend(0, 1)
    for k in range(3):
        mesh.publish(0, f"q{k}")
    mesh.publish(1, "from 1")
    mesh.run_until_quiet(limit_s=60)
    dropped = [e for i in (0, 1) for e in mesh.node(i).events() if isinstance(e, PeerMisbehaved)]
    assert dropped == []  # node 1 drops honest node 0: "bad signature" on 4 short forms
    assert mesh.clocks_agree()


def test_link_flap_during_a_stall_does_not_strand_the_feed() -> None:
    a, o, u, k = 0, 1, 2, 3
    mesh = Mesh(4, seed=0)
    everyone_follows(mesh, len(mesh.nodes))
    feed = mesh.feed(a)
    mesh.add_links([(a, o), (a, u), (u, k)])
    mesh.run_until_quiet(limit_s=30)
    mesh.cut(a, u)  # K's upstream U falls behind
    mesh.publish(a, "U never hears this")
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.add_links([(o, k)])
    replicator = mesh.node(k).replicator
    assert mesh.run_until(lambda: feed in replicator.stalls, limit_s=mesh.now + 5)
    mesh.cut(o, k)  # the link flaps while K waits to switch to O: the stall is dropped...
    mesh.mend(o, k)  # ...and neither side restates an unchanged note (request skipping)
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(k).store.latest_seq(feed) == mesh.node(o).store.latest_seq(feed)


def test_entry_published_while_the_link_comes_up_is_delivered() -> None:
    mesh = Mesh(2, seed=0)
    mesh.follow(0, 1)
    mesh.follow(1, 0)
    for i in (0, 1):  # both already hold each other's feed (they met through a USB drive)
        mesh.node(1 - i).ingest(mesh.node(i).store.get(mesh.feed(i), Seq(1)))
    leader = 0 if mesh.feed(0) < mesh.feed(1) else 1
    mesh.add_links([(0, 1)])  # first contact: the leader's full clock says "seq 1"
    mesh.publish(leader, "posted before the follower's HELLO arrives")
    mesh.run_until_quiet(limit_s=120)
    # The follower is silent ("same seq, eager"); seq 2 was never scheduled for it.
    assert mesh.node(1 - leader).store.latest_seq(mesh.feed(leader)) == 2

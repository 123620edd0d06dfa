"""Replication over the simulator: convergence, request skipping, epochs, ranges, failures."""

from __future__ import annotations

import random
from functools import partial

from meshnode.codec.content import ContactAction
from meshnode.core.events import PeerMisbehaved
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.core.replication import ReplicationConfig
from meshnode.sim.mesh import LinkSpec, Mesh, line, random_graph, star
from meshnode.types import PeerId, Seq
from tests.fakes import everyone_follows


def test_two_nodes_converge_on_first_contact() -> None:
    mesh = Mesh(2, seed=1)
    everyone_follows(mesh, len(mesh.nodes))
    for k in range(5):
        mesh.publish(0, f"zero {k}")
        mesh.publish(1, f"one {k}")
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=60)
    assert mesh.clocks_agree()
    assert mesh.node(1).store.latest_seq(mesh.feed(0)) == 6


def test_line_of_five_relays_live_posts() -> None:
    mesh = Mesh(5, seed=2)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links(line(5))
    mesh.run_until_quiet(limit_s=30)
    mesh.publish(0, "news from the west end")
    mesh.run_until_quiet(limit_s=60)
    assert mesh.node(4).store.latest_seq(mesh.feed(0)) == 5
    assert mesh.clocks_agree()


def test_tree_sends_each_entry_about_once() -> None:
    mesh = Mesh(12, seed=3)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links(random_graph(12, 4, random.Random(3)))
    mesh.run_until_quiet(limit_s=60)
    before = mesh.traffic().entries
    for k in range(10):
        mesh.at(mesh.now + 1 + k, partial(mesh.publish, k % 3, f"post {k}"))
    mesh.run_until_quiet(limit_s=mesh.now + 120)
    assert mesh.clocks_agree()
    sent = mesh.traffic().entries - before
    assert sent <= 10 * 11 * 1.1  # flooding would send several times this


def test_reconnect_mentions_only_changed_feeds() -> None:
    mesh = Mesh(4, seed=4)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1)])
    mesh.add_links([(2, 0), (3, 0)])
    mesh.run_until_quiet(limit_s=60)
    mesh.partition({1})
    mesh.run_until_quiet(limit_s=mesh.now + 5)
    mesh.publish(2, "while 1 was away")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    before = mesh.traffic().control_bytes
    mesh.heal()
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.clocks_agree()
    # Two HELLOs (about 20 bytes each) and a couple of short notes: not a clock of 4 feeds.
    assert mesh.traffic().control_bytes - before < 70


def test_wiped_peer_gets_everything_again() -> None:
    mesh = Mesh(2, seed=5)
    everyone_follows(mesh, len(mesh.nodes))
    for k in range(3):
        mesh.publish(0, f"keep {k}")
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=60)
    mesh.kill(1)
    identity = mesh.nodes[1].identity
    mesh.nodes[1].store = MemoryStore(epoch=b"new-disk")  # same key, store wiped
    mesh.restart(1)
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.nodes[1].identity == identity
    assert mesh.node(1).store.latest_seq(mesh.feed(0)) == 4  # follow + 3 posts


def test_partition_and_heal_converge() -> None:
    mesh = Mesh(6, seed=6)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links(line(6))
    mesh.run_until_quiet(limit_s=60)
    mesh.partition({0, 1, 2})
    mesh.publish(0, "left side")
    mesh.publish(5, "right side")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(5).store.latest_seq(mesh.feed(0)) == 5  # 5 follows, no post yet
    assert mesh.node(3).store.latest_seq(mesh.feed(5)) == 6
    mesh.heal()
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.clocks_agree()
    assert mesh.node(5).store.latest_seq(mesh.feed(0)) == 6


def test_kill_and_restart_converge() -> None:
    mesh = Mesh(5, seed=7)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links(star(5))
    mesh.run_until_quiet(limit_s=60)
    mesh.kill(0)  # the hub
    mesh.publish(1, "hub is down")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    mesh.restart(0)
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.clocks_agree()
    assert mesh.node(4).store.latest_seq(mesh.feed(1)) == 5


def test_lossy_links_converge() -> None:
    mesh = Mesh(6, seed=8)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links(random_graph(6, 3, random.Random(8)), LinkSpec(loss=0.3))
    for k in range(3):
        mesh.at(1 + k, partial(mesh.publish, k, f"lossy {k}"))
    assert mesh.run_until(lambda: mesh.now > 5 and mesh.clocks_agree(), limit_s=1200)
    assert mesh.node(5).store.latest_seq(mesh.feed(0)) == 6


def test_follow_arriving_live_starts_replication() -> None:
    mesh = Mesh(3, seed=9)
    mesh.follow(0, 1)
    mesh.follow(1, 0)
    mesh.follow(1, 2)
    mesh.follow(2, 1)
    mesh.publish(2, "two's feed")
    mesh.add_links(line(3))
    mesh.run_until_quiet(limit_s=60)
    assert mesh.node(0).store.latest_seq(mesh.feed(2)) == 2  # hop 2 via 1
    config = mesh.node(0).policy.config
    assert config.max_hops == 2


def test_capped_peer_never_stalls_a_sync() -> None:
    config = NodeConfig(
        policy=PolicyConfig(partial_entries=5),
        replication=ReplicationConfig(stall_timeout_s=30),
    )
    mesh = Mesh(4, seed=10, config=config)
    # 0 is the author; 1 follows 0 (whole feed); 2 is two hops away (keeps the last 5);
    # 3 follows 0 and meets the capped node 2 first.
    mesh.follow(1, 0)
    mesh.follow(2, 1)
    mesh.follow(3, 0)
    for k in range(20):
        mesh.publish(0, f"entry {k}")
    mesh.add_links([(0, 1), (1, 2)])
    mesh.run_until_quiet(limit_s=60)
    assert mesh.node(2).store.ranges()[mesh.feed(0)] == (16, 20)
    for k in range(10):
        mesh.node(3).ingest(mesh.node(0).store.get(mesh.feed(0), Seq(k + 1)))
    mesh.add_links([(3, 2)])
    mesh.run_until_quiet(limit_s=mesh.now + 10)
    mesh.add_links([(3, 1)])
    start = mesh.now
    assert mesh.run_until(lambda: mesh.node(3).store.latest_seq(mesh.feed(0)) == 20, start + 30)
    assert mesh.now - start < 5  # not the 30 s stall timeout


def test_partial_feed_fetches_only_its_tail() -> None:
    config = NodeConfig(policy=PolicyConfig(partial_entries=5))
    mesh = Mesh(3, seed=11, config=config)
    mesh.follow(1, 0)
    mesh.follow(2, 1)
    for k in range(40):
        mesh.publish(0, f"entry {k}")
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=60)
    before = mesh.traffic().entries
    mesh.add_links([(1, 2)])
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(2).store.ranges()[mesh.feed(0)] == (36, 40)
    assert mesh.traffic().entries - before <= 5 + 2  # the tail, plus 1's own feed


def test_flow_control_is_fair_across_feeds() -> None:
    config = NodeConfig(replication=ReplicationConfig(window_bytes=2000))
    mesh = Mesh(4, seed=12, config=config)
    for j in (1, 2, 3):
        mesh.follow(0, j)
    mesh.follow(1, 2)
    mesh.follow(1, 3)
    for k in range(300):
        mesh.publish(1, f"a long feed {k}")
    mesh.publish(2, "small")
    mesh.publish(3, "small too")
    for j in (2, 3):
        mesh.node(1).ingest(mesh.node(j).store.get(mesh.feed(j), Seq(1)))
    slow = LinkSpec(bandwidth_bytes_per_s=20_000)
    mesh.add_link(0, 1, slow)
    small = [mesh.feed(2), mesh.feed(3)]
    assert mesh.run_until(
        lambda: all(mesh.node(0).store.latest_seq(f) == 1 for f in small), limit_s=60
    )
    assert mesh.node(0).store.latest_seq(mesh.feed(1)) < 100  # the big feed did not go first


def test_garbage_frame_drops_only_that_peer() -> None:
    mesh = Mesh(3, seed=13)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1), (0, 2)])
    mesh.run_until_quiet(limit_s=60)
    node = mesh.node(0)
    node.receive_frame(PeerId(mesh.feed(1)), b"\x04\xff", now=mesh.now)
    events = node.events()
    assert any(isinstance(e, PeerMisbehaved) for e in events)
    assert PeerId(mesh.feed(1)) not in node.replicator.sessions
    mesh.publish(2, "still talking to 2")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert node.store.latest_seq(mesh.feed(2)) == 3


def test_invalid_entry_is_not_stored_and_drops_the_peer() -> None:
    mesh = Mesh(2, seed=14)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=60)
    forged = bytearray(mesh.node(1).post("real", timestamp_ms=0).raw)
    forged[-5] ^= 0xFF
    node = mesh.node(0)
    seq = node.store.latest_seq(mesh.feed(1))
    node.receive_frame(PeerId(mesh.feed(1)), b"\x06\x00" + bytes(forged), now=mesh.now)
    assert node.store.latest_seq(mesh.feed(1)) == seq
    assert any(isinstance(e, PeerMisbehaved) for e in node.events())


def test_block_stops_replication_of_that_feed() -> None:
    mesh = Mesh(2, seed=15)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1)])
    mesh.run_until_quiet(limit_s=60)
    mesh.node(0).set_contact(ContactAction.BLOCK, mesh.feed(1), timestamp_ms=0)
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    seq = mesh.node(0).store.latest_seq(mesh.feed(1))
    mesh.publish(1, "you blocked me")
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    assert mesh.node(0).store.latest_seq(mesh.feed(1)) == seq

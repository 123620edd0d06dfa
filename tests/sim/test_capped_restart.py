"""A capped node far behind fetches only the tail it keeps, from any peer, over any link."""

from __future__ import annotations

import pytest

from meshnode.core.node import NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.sim.mesh import LinkSpec, Mesh


def _capped_and_behind(seed: int) -> Mesh:
    """Node 2 keeps the last 5 entries of feed 0 (two hops) and holds 6..10; feed 0 is at
    70; node 3 holds all of it and has never met node 2."""
    mesh = Mesh(4, seed=seed, config=NodeConfig(policy=PolicyConfig(partial_entries=5)))
    mesh.follow(1, 0)
    mesh.follow(2, 1)
    mesh.follow(3, 0)
    for k in range(10):
        mesh.publish(0, f"entry {k}")
    mesh.add_links([(0, 1), (1, 2)])
    mesh.run_until_quiet(limit_s=60)
    assert mesh.node(2).store.ranges()[mesh.feed(0)] == (6, 10)
    mesh.cut(1, 2)
    mesh.add_links([(0, 3)])
    for k in range(60):
        mesh.publish(0, f"later {k}")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(3).store.ranges()[mesh.feed(0)] == (1, 70)
    return mesh


@pytest.mark.parametrize(
    "spec",
    [LinkSpec(), LinkSpec(reliable=False), LinkSpec(loss=0.3)],
    ids=["stream", "radio", "lossy"],
)
def test_capped_node_asks_a_new_peer_for_the_tail_only(spec: LinkSpec) -> None:
    # Node 3 has no memory of node 2, so nothing is pushed on a guess: node 2's note asks
    # for 66 on, and takes 66 as a restart of the feed.
    mesh = _capped_and_behind(seed=3)
    before = mesh.traffic().entries
    mesh.add_link(2, 3, spec)
    mesh.run_until_quiet(limit_s=mesh.now + 120)
    assert mesh.node(2).store.ranges()[mesh.feed(0)] == (66, 70)
    sent = mesh.traffic().entries - before
    # The tail is 5 entries; the whole gap would be 60. Without a stream's promise of order
    # the ask that crossed node 3's push of the tail is served again (a lost push looks
    # the same), and with loss a few more are resent.
    limit = 5 + 2 if spec.reliable and not spec.loss else 2 * 5 + 2 if not spec.loss else 20
    assert sent <= limit, sent


def test_restarted_feed_goes_on_growing() -> None:
    mesh = _capped_and_behind(seed=4)
    mesh.add_link(2, 3, LinkSpec())
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    for k in range(3):
        mesh.publish(0, f"more {k}")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    assert mesh.node(2).store.ranges()[mesh.feed(0)] == (69, 73)
    assert mesh.node(2).check().ok

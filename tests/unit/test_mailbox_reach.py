"""Node.reach: how far a feed has travelled, from what replication knows of each peer."""

from __future__ import annotations

from meshnode.sim.mesh import LinkSpec, Mesh, line
from meshnode.types import PeerId


def reach_by_index(mesh: Mesh, holder: int, author: int) -> dict[int, int]:
    held = mesh.node(holder).reach(mesh.feed(author))
    assert set(held) <= set(mesh.by_peer)
    return {mesh.by_peer[PeerId(p)]: seq for p, seq in held.items()}


def published_line(spec: LinkSpec) -> Mesh:
    """Nodes 0 - 1 - 2 in a line; 1 and 2 follow 0, which posts 5 times."""
    mesh = Mesh(3, seed=1)
    mesh.add_links(line(3), spec)
    for i in (1, 2):
        mesh.follow(i, 0)
    mesh.run_until_quiet(limit_s=600)
    for k in range(5):
        mesh.publish(0, f"post {k}")
    mesh.run_until_quiet(limit_s=600)
    return mesh


def test_reach_names_each_peer_known_to_hold_the_feed_and_ourselves() -> None:
    mesh = published_line(LinkSpec())
    assert mesh.node(2).store.latest_seq(mesh.feed(0)) == 5
    # Node 0 knows its neighbour holds all 5; node 2 is not linked to it: unknown.
    assert reach_by_index(mesh, 0, 0) == {0: 5, 1: 5}
    # Node 2 learned from node 1's notes that node 1 holds them.
    assert reach_by_index(mesh, 2, 0) == {1: 5, 2: 5}


def test_what_a_closed_reliable_link_delivered_of_our_feed_is_remembered() -> None:
    mesh = published_line(LinkSpec())
    mesh.cut(0, 1)
    assert reach_by_index(mesh, 0, 0) == {0: 5, 1: 5}
    mesh.publish(0, "while apart")
    mesh.run_until_quiet(limit_s=600)
    assert reach_by_index(mesh, 0, 0) == {0: 6, 1: 5}  # not claimed before it is known
    mesh.mend(0, 1)
    mesh.run_until_quiet(limit_s=600)
    assert reach_by_index(mesh, 0, 0) == {0: 6, 1: 6}


def test_a_feed_nobody_was_told_about_reaches_only_its_holder() -> None:
    mesh = published_line(LinkSpec())
    assert reach_by_index(mesh, 1, 2) == {}

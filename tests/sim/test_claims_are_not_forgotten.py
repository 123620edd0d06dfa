"""A claim "I have more of this feed" must not be forgotten while another is pending."""

from __future__ import annotations

from meshnode.codec.content import ContactAction
from meshnode.sim.mesh import LinkSpec, Mesh
from tests.fakes import everyone_follows


def test_a_second_longer_claim_is_not_forgotten() -> None:
    a, u, p1, p2, k = 0, 1, 2, 3, 4
    mesh = Mesh(5, seed=0)
    everyone_follows(mesh, len(mesh.nodes))
    feed = mesh.feed(a)
    mesh.add_links([(a, u), (u, k), (a, p1), (a, p2)])
    mesh.run_until_quiet(limit_s=30)
    mesh.add_links([(p1, k), (p2, k)])  # K keeps U as its upstream; P1 and P2 are lazy
    mesh.run_until_quiet(limit_s=mesh.now + 30)
    mesh.cut(a, u)  # U falls behind
    mesh.publish(a, "P1 and P2 hear this")
    mesh.run_until_quiet(limit_s=mesh.now + 0.2)
    mesh.cut(a, p1)
    mesh.publish(a, "only P2 hears this")
    mesh.run_until_quiet(limit_s=mesh.now + 60)
    # K's stall is keyed to P1; P2's claim of one more entry is dropped (_behind: "feed not
    # in self.stalls"), and once P1's entry arrives nothing remembers it.
    assert mesh.node(k).store.latest_seq(feed) == mesh.node(p2).store.latest_seq(feed)


def test_stateful_case_kill_publish_block_converges() -> None:
    # Minimal failure of tests/property/test_replication_state.py on reliable links.
    mesh = Mesh(4, seed=99)
    everyone_follows(mesh, len(mesh.nodes))
    mesh.add_links([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], LinkSpec(reliable=True))
    mesh.kill(0)
    mesh.run_until_quiet(limit_s=mesh.now + 1.0)
    mesh.publish(3, "post 1")
    mesh.node(2).set_contact(ContactAction.BLOCK, mesh.feed(3), timestamp_ms=0)
    mesh._pump(2)
    mesh.restart(0)
    assert mesh.run_until(mesh.clocks_agree, limit_s=mesh.now + 600)

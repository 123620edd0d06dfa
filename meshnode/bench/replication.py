"""Replication benchmark: fixed scenarios in the simulator (deterministic from their seeds).

* ``redundancy``, ``control_bytes_per_delivery``, ``note_bytes_median``: 50 nodes on a
  random connected graph of mean degree 5 (125 links, 10-100 ms one-way latency); 20 of
  them are authors who post 10 entries each at random times in the first minute; every
  node follows the 20 authors.
* ``delivery``: the same, with 20% of the non-author nodes killed at 30 s (chosen so the
  rest stay connected).
* ``reconnect_bytes`` / ``reconnect_rtts`` and ``first_contact_bytes`` /
  ``first_contact_rtts``: two nodes that both follow and hold 3,000 feeds, on a link with
  2 s one-way latency; they meet for the first time, part, 10 feeds gain one entry each at
  one of them, and they meet again.
* ``lossy_delivery``: 10 nodes, mean degree 4, 30% frame loss on every link, everyone
  follows everyone, each posts 5 entries; ``lossy_transmissions_per_delivery``: entry
  frames sent in that run (lost ones too) per entry a node needed (ideal 1/(1-0.3) = 1.43;
  goal <= 2.0).
"""

from __future__ import annotations

import time

from meshnode.codec.content import Contact, ContactAction, encode_contact
from meshnode.codec.message import ContentType, create_entry
from meshnode.secure.identity import Identity
from meshnode.sim.mesh import LinkSpec, Mesh
from meshnode.sim.scenario import Scenario, run_scenario
from meshnode.types import FeedId, MsgId, Seq

__all__ = ["bench_replication", "run_pair", "run_tree"]


def run_tree(seed: int = 1, kill_fraction: float = 0.0) -> dict[str, float]:
    """The 50-node scenario; returns redundancy, control cost and delivery."""
    sc = Scenario(nodes=50, degree=5, authors=20, posts=10, seed=seed, kill_fraction=kill_fraction)
    return run_scenario(sc)


def _author_entries(n: int, seed: int) -> list[list[bytes]]:
    """One entry per author for ``n`` authors, and a second entry for the first 10."""
    from meshnode.secure.identity import DEFAULT_NETWORK_KEY

    out = []
    for i in range(n):
        who = Identity(seed.to_bytes(2, "big") + i.to_bytes(4, "big") + bytes(26))
        first = create_entry(
            who,
            DEFAULT_NETWORK_KEY,
            seq=Seq(1),
            previous=None,
            timestamp_ms=0,
            content_type=ContentType.POST,
            content=b"hello",
        )
        chain = [first.raw]
        if i < 10:
            second = create_entry(
                who,
                DEFAULT_NETWORK_KEY,
                seq=Seq(2),
                previous=MsgId(first.id),
                timestamp_ms=1,
                content_type=ContentType.POST,
                content=b"news",
            )
            chain.append(second.raw)
        out.append(chain)
    return out


def _follow_all(mesh: Mesh, i: int, authors: list[FeedId]) -> None:
    node = mesh.node(i)
    for feed in authors:
        node.publish(
            ContentType.CONTACT,
            encode_contact(Contact(action=ContactAction.FOLLOW, target=feed)),
            timestamp_ms=0,
        )


def run_pair(feeds: int = 3000, latency_s: float = 2.0, seed: int = 5) -> dict[str, float]:
    """First contact and reconnect of two nodes sharing ``feeds`` feeds."""
    mesh = Mesh(2, seed=seed)
    chains = _author_entries(feeds, seed)
    authors = [FeedId(c[0][1:33]) for c in chains]
    for i in (0, 1):
        _follow_all(mesh, i, authors)
        for chain in chains:
            mesh.node(i).ingest(chain[0])
    rtt = 2 * latency_s
    spec = LinkSpec(latency_s=latency_s, bandwidth_bytes_per_s=1_000_000)
    before = mesh.traffic().control_bytes
    start = mesh.now
    mesh.add_link(0, 1, spec)
    mesh.run_until_quiet(limit_s=start + 120)
    first_bytes = mesh.traffic().control_bytes - before
    first_rtts = (_last_delivery(mesh, start) - start - first_bytes / 1e6) / rtt
    mesh.partition({0})
    mesh.run_until_quiet(limit_s=mesh.now + 1)
    for chain in chains[:10]:
        mesh.node(0).ingest(chain[1])
    before_t = mesh.traffic()
    start = mesh.now
    mesh.heal()
    mesh.run_until_quiet(limit_s=start + 120)
    after = mesh.traffic()
    got = sum(mesh.node(1).store.latest_seq(f) for f in authors[:10])
    control = after.control_bytes - before_t.control_bytes
    transfer = (after.entry_bytes - before_t.entry_bytes + control) / 1e6
    return {
        "first_contact_bytes": first_bytes,
        "first_contact_rtts": first_rtts,
        "reconnect_bytes": control,
        "reconnect_rtts": (_last_delivery(mesh, start) - start - transfer) / rtt,
        "reconnect_delivered": got / 20,
    }


def _last_delivery(mesh: Mesh, start: float) -> float:
    return max(start, mesh.last_delivery_s)


def run_lossy(seed: int = 3) -> dict[str, float]:
    """10 nodes, 30% loss on every link, everyone follows everyone."""
    sc = Scenario(nodes=10, degree=4, authors=10, posts=5, loss=0.3, seed=seed, post_window_s=30)
    return run_scenario(sc)


def bench_replication() -> dict[str, object]:
    """Every scenario; one flat dict of figures."""
    started = time.perf_counter()
    tree = run_tree()
    killed = run_tree(kill_fraction=0.2)
    pair = run_pair()
    lossy = run_lossy()
    return {
        "redundancy": round(tree["redundancy"], 4),
        "control_bytes_per_delivery": round(tree["control_bytes_per_delivery"], 2),
        "note_bytes_median": tree["note_bytes_median"],
        "delivery": round(killed["delivered"], 4),
        "reconnect_bytes": pair["reconnect_bytes"],
        "first_contact_bytes": pair["first_contact_bytes"],
        "reconnect_rtts": round(pair["reconnect_rtts"], 3),
        "first_contact_rtts": round(pair["first_contact_rtts"], 3),
        "lossy_delivery": round(lossy["delivered"], 4),
        "lossy_transmissions_per_delivery": round(lossy["redundancy"], 3),
        "wall_s": round(time.perf_counter() - started, 1),
    }

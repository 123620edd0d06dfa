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
  follows everyone, each posts 5 entries.
"""

from __future__ import annotations

import random
import statistics
import time
from functools import partial

from meshnode.codec.content import Contact, ContactAction, encode_contact
from meshnode.codec.message import ContentType, create_entry
from meshnode.identity import Identity
from meshnode.sim import LinkSpec, Mesh, random_graph
from meshnode.types import FeedId, MsgId, Seq

__all__ = ["bench_replication", "run_pair", "run_tree"]

_AUTHORS = 20
_POSTS = 10


def _tree_mesh(seed: int) -> tuple[Mesh, list[int]]:
    mesh = Mesh(50, seed=seed)
    rng = random.Random(seed)
    authors = rng.sample(range(50), _AUTHORS)
    for i in range(50):
        for a in authors:
            if a != i:
                mesh.follow(i, a)
    for a, b in random_graph(50, 5, rng):
        mesh.add_link(a, b, LinkSpec(latency_s=rng.uniform(0.010, 0.100)))
    for a in authors:
        for k in range(_POSTS):
            mesh.at(rng.uniform(1, 60), partial(mesh.publish, a, f"post {k} of {a}"))
    return mesh, authors


def _connected_without(mesh: Mesh, dead: set[int]) -> bool:
    alive = [i for i in range(len(mesh.nodes)) if i not in dead]
    seen = {alive[0]}
    todo = [alive[0]]
    while todo:
        for j in mesh.neighbours(todo.pop()):
            if j not in dead and j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(alive)


def run_tree(seed: int = 1, kill_fraction: float = 0.0) -> dict[str, float]:
    """The 50-node scenario; returns redundancy, control cost and delivery."""
    mesh, authors = _tree_mesh(seed)
    rng = random.Random(seed + 1)
    dead: set[int] = set()
    if kill_fraction:
        others = [i for i in range(50) if i not in authors]
        while True:
            dead = set(rng.sample(others, round(50 * kill_fraction)))
            if _connected_without(mesh, dead):
                break
        for i in sorted(dead):
            mesh.at(30.0, partial(mesh.kill, i))
    mesh.run_until_quiet(limit_s=900)
    latest = {mesh.feed(a): mesh.node(a).store.latest_seq(mesh.feed(a)) for a in authors}
    entries = sum(latest.values())
    alive = [i for i in range(50) if mesh.alive(i)]
    got = sum(mesh.node(i).store.latest_seq(f) for i in alive for f in latest if f != mesh.feed(i))
    wanted = sum(
        n * (len(alive) - (1 if mesh.alive(authors[k]) else 0))
        for k, n in enumerate(latest.values())
    )
    traffic = mesh.traffic()
    receivers = entries * 49
    return {
        "redundancy": traffic.entries / receivers,
        "control_bytes_per_delivery": traffic.control_bytes / receivers,
        "note_bytes_median": statistics.median(traffic.note_sizes) if traffic.note_sizes else 0,
        "delivery": got / wanted,
        "sim_s": mesh.now,
    }


def _author_entries(n: int, seed: int) -> list[list[bytes]]:
    """One entry per author for ``n`` authors, and a second entry for the first 10."""
    from meshnode.identity import DEFAULT_NETWORK_KEY

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
    """10 nodes, 30% loss on every link; fraction of entries delivered everywhere."""
    mesh = Mesh(10, seed=seed)
    rng = random.Random(seed)
    for i in range(10):
        for j in range(10):
            if i != j:
                mesh.follow(i, j)
    for a, b in random_graph(10, 4, rng):
        mesh.add_link(a, b, LinkSpec(latency_s=rng.uniform(0.01, 0.1), loss=0.3))
    for i in range(10):
        for k in range(5):
            mesh.at(rng.uniform(1, 30), partial(mesh.publish, i, f"lossy {k} of {i}"))
    mesh.run_until(lambda: mesh.now > 31 and mesh.clocks_agree(), limit_s=1800)
    feeds = [mesh.feed(i) for i in range(10)]
    total = sum(mesh.node(i).store.latest_seq(feeds[i]) for i in range(10)) * 9
    got = sum(
        mesh.node(i).store.latest_seq(f) for i in range(10) for j, f in enumerate(feeds) if i != j
    )
    return {"lossy_delivery": got / total, "lossy_sim_s": mesh.now}


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
        "delivery": round(killed["delivery"], 4),
        "reconnect_bytes": pair["reconnect_bytes"],
        "first_contact_bytes": pair["first_contact_bytes"],
        "reconnect_rtts": round(pair["reconnect_rtts"], 3),
        "first_contact_rtts": round(pair["first_contact_rtts"], 3),
        "lossy_delivery": round(lossy["lossy_delivery"], 4),
        "wall_s": round(time.perf_counter() - started, 1),
    }

"""Ready-made simulator scenarios: a random mesh where authors post and everyone follows them.

Used by ``meshnode sim`` and by ``python -m meshnode.bench replication``. Deterministic
from the seed.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from functools import partial

from meshnode.sim.mesh import LinkSpec, Mesh, random_graph

__all__ = ["Scenario", "run_scenario"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Shape of one simulated run."""

    nodes: int = 20
    degree: float = 4.0
    authors: int = 5
    posts: int = 10
    loss: float = 0.0
    seed: int = 1
    latency_s: tuple[float, float] = (0.010, 0.100)
    post_window_s: float = 60.0
    kill_fraction: float = 0.0
    kill_at_s: float = 30.0
    limit_s: float = 3600.0


def _connected_without(mesh: Mesh, dead: set[int]) -> bool:
    alive = [i for i in range(len(mesh.nodes)) if i not in dead]
    seen, todo = {alive[0]}, [alive[0]]
    while todo:
        for j in mesh.neighbours(todo.pop()):
            if j not in dead and j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(alive)


def _build(sc: Scenario, rng: random.Random) -> tuple[Mesh, list[int]]:
    mesh = Mesh(sc.nodes, seed=sc.seed)
    authors = sorted(rng.sample(range(sc.nodes), min(sc.authors, sc.nodes)))
    for i in range(sc.nodes):
        for a in authors:
            if a != i:
                mesh.follow(i, a)
    for a, b in random_graph(sc.nodes, sc.degree, rng):
        mesh.add_link(a, b, LinkSpec(latency_s=rng.uniform(*sc.latency_s), loss=sc.loss))
    for a in authors:
        for k in range(sc.posts):
            at = rng.uniform(1, sc.post_window_s)
            mesh.at(at, partial(mesh.publish, a, f"post {k} of node {a}"))
    return mesh, authors


def _kill_some(mesh: Mesh, sc: Scenario, authors: list[int], rng: random.Random) -> None:
    """Kill ``kill_fraction`` of the non-authors at ``kill_at_s``, keeping the rest connected."""
    others = [i for i in range(sc.nodes) if i not in authors]
    count = min(len(others), round(sc.nodes * sc.kill_fraction))
    for _ in range(1000):
        dead = set(rng.sample(others, count))
        if _connected_without(mesh, dead):
            break
    else:
        raise ValueError("no set of nodes to kill leaves the rest connected")
    for i in sorted(dead):
        mesh.at(sc.kill_at_s, partial(mesh.kill, i))


def run_scenario(sc: Scenario) -> dict[str, float]:
    """Run ``sc``; figures about delivery, redundancy and control traffic."""
    rng = random.Random(sc.seed)
    mesh, authors = _build(sc, rng)
    if sc.kill_fraction:
        _kill_some(mesh, sc, authors, rng)
    end_of_posts = max(sc.post_window_s, sc.kill_at_s if sc.kill_fraction else 0) + 1
    mesh.run_until(lambda: mesh.now > end_of_posts and mesh.clocks_agree(), sc.limit_s)
    converged_s = mesh.now
    mesh.run_until_quiet(limit_s=min(sc.limit_s, mesh.now + 60))
    feeds = [mesh.feed(a) for a in authors]
    entries = sum(mesh.node(a).store.latest_seq(f) for a, f in zip(authors, feeds, strict=True))
    alive = [i for i in range(sc.nodes) if mesh.alive(i)]
    got = sum(mesh.node(i).store.latest_seq(f) for i in alive for f in feeds if f != mesh.feed(i))
    wanted = sum(
        mesh.node(a).store.latest_seq(f) * (len(alive) - 1)
        for a, f in zip(authors, feeds, strict=True)
    )
    traffic = mesh.traffic()
    receivers = entries * (sc.nodes - 1)
    return {
        "nodes": sc.nodes,
        "links": len(mesh.links) // 2,
        "entries": entries,
        "delivered": got / wanted if wanted else 1.0,
        "redundancy": traffic.entries / receivers if receivers else 0.0,
        "control_bytes_per_delivery": traffic.control_bytes / receivers if receivers else 0.0,
        "note_bytes_median": statistics.median(traffic.note_sizes) if traffic.note_sizes else 0,
        "converged_s": round(converged_s, 3),
    }

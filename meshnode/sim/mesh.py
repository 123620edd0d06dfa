"""Deterministic many-node simulator: the real core over in-memory links and a fake clock.

Each directed link has latency, bandwidth (frames are serialised one after another), loss
and an MTU. Everything random comes from one seeded ``random.Random``, so a seed replays
a run exactly. Used by the tests, ``meshnode sim`` and ``python -m meshnode.bench
replication``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.codec.content import ContactAction
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node, NodeConfig
from meshnode.core.replication import LinkInfo, TrafficStats
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.types import FeedId, PeerId

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LinkSpec", "Mesh", "line", "random_graph", "star"]

_DELIVER, _DRAINED, _TIMER = 0, 1, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    """Properties of one link (both directions)."""

    latency_s: float = 0.05
    bandwidth_bytes_per_s: float = 1_000_000.0
    loss: float = 0.0
    mtu_bytes: int = 65536
    reliable: bool = True  # as TCP: the core may assume frames arrive (ignored when loss > 0)


@dataclass(slots=True)
class _Direction:
    spec: LinkSpec
    busy_until: float = 0.0
    up: bool = True


@dataclass(slots=True)
class _SimNode:
    identity: Identity
    store: MemoryStore
    node: Node | None
    timer_at: float | None = None
    traffic: list[TrafficStats] = field(default_factory=list)


def random_graph(n: int, degree: float, rng: random.Random) -> list[tuple[int, int]]:
    """A connected random graph with about ``n * degree / 2`` edges."""
    order = list(range(n))
    rng.shuffle(order)
    edges = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, n)}
    target = max(len(edges), round(n * degree / 2))
    while len(edges) < target:
        a, b = rng.sample(range(n), 2)
        edges.add(tuple(sorted((a, b))))
    return sorted((a, b) for a, b in edges)


def line(n: int) -> list[tuple[int, int]]:
    """0 - 1 - 2 - ... - n-1."""
    return [(i, i + 1) for i in range(n - 1)]


def star(n: int) -> list[tuple[int, int]]:
    """0 in the middle."""
    return [(0, i) for i in range(1, n)]


class Mesh:
    """N nodes, links between them, and a fake clock."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        config: NodeConfig | None = None,
        network_key: bytes = DEFAULT_NETWORK_KEY,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.config = config or NodeConfig()
        self.network_key = network_key
        self._queue: list[tuple[float, int, int, tuple[object, ...]]] = []
        self._counter = itertools.count()
        self.links: dict[tuple[int, int], _Direction] = {}
        self.last_delivery_s = 0.0
        self._losses: list[tuple[int, int, Callable[[bytes], bool]]] = []
        self.nodes = [self._new_sim_node(seed, i) for i in range(n)]
        self.by_peer = {PeerId(s.identity.feed_id): i for i, s in enumerate(self.nodes)}
        for i in range(n):
            self._boot(i)

    # -- building ---------------------------------------------------------------------

    def _new_sim_node(self, seed: int, i: int) -> _SimNode:
        key = hashlib.sha256(f"meshnode sim {seed} node {i}".encode()).digest()
        epoch = self.rng.randbytes(8)
        return _SimNode(identity=Identity(key), store=MemoryStore(epoch=epoch), node=None)

    def _boot(self, i: int) -> None:
        sim = self.nodes[i]
        sim.node = Node(
            sim.identity,
            network_key=self.network_key,
            store=sim.store,
            config=self.config,
            rng=random.Random(self.rng.random()),
        )
        sim.traffic.append(sim.node.replicator.traffic)

    def node(self, i: int) -> Node:
        """The live core of node ``i``."""
        node = self.nodes[i].node
        if node is None:
            raise RuntimeError(f"node {i} is dead")
        return node

    def feed(self, i: int) -> FeedId:
        """Feed id of node ``i``."""
        return FeedId(self.nodes[i].identity.feed_id)

    def alive(self, i: int) -> bool:
        """True unless node ``i`` was killed and not restarted."""
        return self.nodes[i].node is not None

    def add_links(self, edges: list[tuple[int, int]], spec: LinkSpec | None = None) -> None:
        """Connect each (a, b) pair with a link of ``spec``."""
        for a, b in edges:
            self.add_link(a, b, spec or LinkSpec())

    def add_link(self, a: int, b: int, spec: LinkSpec) -> None:
        """Connect a and b; both start a session now."""
        self.links[(a, b)] = _Direction(spec)
        self.links[(b, a)] = _Direction(spec)
        self._open(a, b)

    def _open(self, a: int, b: int) -> None:
        if not (self.alive(a) and self.alive(b) and self.links[(a, b)].up):
            return
        spec = self.links[(a, b)].spec
        info = LinkInfo(mtu_bytes=spec.mtu_bytes, reliable=spec.reliable and spec.loss == 0)
        self.node(a).connect(PeerId(self.feed(b)), now=self.now, link=info)
        self.node(b).connect(PeerId(self.feed(a)), now=self.now, link=info)
        self._pump(a)
        self._pump(b)

    def _close(self, a: int, b: int) -> None:
        for x, y in ((a, b), (b, a)):
            if self.alive(x):
                self.node(x).disconnect(PeerId(self.feed(y)), now=self.now)
                self._pump(x)

    def neighbours(self, i: int) -> list[int]:
        """Nodes linked to ``i``."""
        return sorted(b for (a, b) in self.links if a == i)

    # -- scenario actions -------------------------------------------------------------

    def follow(self, i: int, j: int) -> None:
        """Node i follows node j."""
        self.node(i).set_contact(ContactAction.FOLLOW, self.feed(j), timestamp_ms=self._ms())
        self._pump(i)

    def publish(self, i: int, text: str) -> None:
        """Node i posts ``text``."""
        self.node(i).post(text, timestamp_ms=self._ms())
        self._pump(i)

    def _ms(self) -> int:
        return 1_700_000_000_000 + int(self.now * 1000)

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``t``."""
        self._push(t, _TIMER, (action,))

    def kill(self, i: int) -> None:
        """Crash node i: its sessions end without saving, its store survives."""
        for j in self.neighbours(i):
            if self.alive(j):
                self.node(j).disconnect(PeerId(self.feed(i)), now=self.now)
                self._pump(j)
        self.nodes[i].node = None

    def restart(self, i: int) -> None:
        """Start node i again on its old store and reconnect its links."""
        self._boot(i)
        for j in self.neighbours(i):
            self._open(i, j)

    def partition(self, group: set[int]) -> None:
        """Cut every link between ``group`` and the rest."""
        for (a, b), direction in self.links.items():
            if (a in group) != (b in group) and direction.up:
                direction.up = False
                if a < b:
                    self._close(a, b)

    def cut(self, a: int, b: int) -> None:
        """Cut the link between a and b."""
        self.links[(a, b)].up = self.links[(b, a)].up = False
        self._close(a, b)

    def mend(self, a: int, b: int) -> None:
        """Restore the link between a and b."""
        self.links[(a, b)].up = self.links[(b, a)].up = True
        self._open(a, b)

    def heal(self) -> None:
        """Restore every cut link."""
        for (a, b), direction in self.links.items():
            if not direction.up:
                direction.up = True
                if a < b:
                    self.links[(b, a)].up = True
                    self._open(a, b)

    # -- the event loop -----------------------------------------------------------------

    def _push(self, t: float, kind: int, data: tuple[object, ...]) -> None:
        heapq.heappush(self._queue, (t, next(self._counter), kind, data))

    def _pump(self, i: int) -> None:
        """Route node i's outgoing frames and re-arm its timer."""
        node = self.nodes[i].node
        if node is None:
            return
        for peer, frame in node.frames_to_send():
            j = self.by_peer[peer]
            self._transmit(i, j, frame)
        deadline = node.next_deadline()
        if deadline is not None and deadline != self.nodes[i].timer_at:
            self.nodes[i].timer_at = deadline
            self._push(max(deadline, self.now), _TIMER, (i, deadline))

    def _transmit(self, a: int, b: int, frame: bytes) -> None:
        direction = self.links.get((a, b))
        if direction is None or not direction.up:
            return
        spec = direction.spec
        if len(frame) > spec.mtu_bytes:
            raise AssertionError(f"frame of {len(frame)} bytes over the link MTU")
        start = max(self.now, direction.busy_until)
        done = start + len(frame) / spec.bandwidth_bytes_per_s
        direction.busy_until = done
        self._push(done, _DRAINED, (a, b, len(frame)))
        lost = self.rng.random() < spec.loss
        if not lost and self._losses:
            lost = self._chosen_loss(a, b, frame)
        if not lost:
            self._push(done + spec.latency_s, _DELIVER, (a, b, frame))

    def lose(self, a: int, b: int, match: Callable[[bytes], bool]) -> None:
        """Lose the next frame from a to b for which ``match(frame)`` holds (once)."""
        self._losses.append((a, b, match))

    def _chosen_loss(self, a: int, b: int, frame: bytes) -> bool:
        for k, (x, y, match) in enumerate(self._losses):
            if (x, y) == (a, b) and match(frame):
                del self._losses[k]
                return True
        return False

    def step(self) -> bool:
        """Process the next event; False when none is left."""
        if not self._queue:
            return False
        t, _, kind, data = heapq.heappop(self._queue)
        self.now = max(self.now, t)
        if kind == _TIMER and len(data) == 1:
            action = data[0]
            assert callable(action)
            action()
        elif kind == _TIMER:
            i, deadline = data
            assert isinstance(i, int)
            sim = self.nodes[i]
            if sim.node is not None and sim.timer_at == deadline:
                sim.timer_at = None
                sim.node.handle_timer(self.now)
                self._pump(i)
        else:
            self._link_event(kind, data)
        return True

    def _link_event(self, kind: int, data: tuple[object, ...]) -> None:
        a, b, payload = data
        assert isinstance(a, int)
        assert isinstance(b, int)
        direction = self.links[(a, b)]
        if not direction.up or not self.alive(a) or not self.alive(b):
            return
        if kind == _DRAINED:
            assert isinstance(payload, int)
            self.node(a).delivered(PeerId(self.feed(b)), payload)
            self._pump(a)
        else:
            assert isinstance(payload, bytes)
            self.last_delivery_s = self.now
            self.node(b).receive_frame(PeerId(self.feed(a)), payload, now=self.now)
            self._pump(b)

    def drop_frame(self, index: int) -> bool:
        """Lose one frame in flight (the ``index``-th, modulo how many there are)."""
        in_flight = [k for k, event in enumerate(self._queue) if event[2] == _DELIVER]
        if not in_flight:
            return False
        del self._queue[in_flight[index % len(in_flight)]]
        heapq.heapify(self._queue)
        return True

    def run_until(self, done: Callable[[], bool], limit_s: float) -> bool:
        """Run until ``done()`` holds (checked after each event) or the clock passes ``limit_s``."""
        while not done():
            if not self._queue or self._queue[0][0] > limit_s:
                return done()
            self.step()
        return True

    def run_until_quiet(self, limit_s: float) -> None:
        """Run until no frame is in flight and no timer is due before ``limit_s``."""
        while self._queue and self._queue[0][0] <= limit_s:
            self.step()

    # -- measuring ------------------------------------------------------------------------

    def clocks_agree(self, feeds: list[FeedId] | None = None) -> bool:
        """Live nodes that want a feed and can reach each other through nodes that also want
        it (over links that are up) hold the same latest seq of it."""
        for feed in feeds or self.all_wanted():
            wanting = {
                i
                for i in range(len(self.nodes))
                if self.alive(i) and self.node(i).scope(feed) is not None
            }
            while wanting:
                group = self._component(wanting.pop(), wanting)
                if len({self.node(i).store.latest_seq(feed) for i in group}) > 1:
                    return False
        return True

    def _component(self, start: int, rest: set[int]) -> set[int]:
        """``start`` and the members of ``rest`` it reaches over live links (taken from rest)."""
        group, todo = {start}, [start]
        while todo:
            a = todo.pop()
            for b in self.neighbours(a):
                if b in rest and self.links[(a, b)].up:
                    rest.discard(b)
                    group.add(b)
                    todo.append(b)
        return group

    def all_wanted(self) -> set[FeedId]:
        """Feeds some live node wants."""
        out: set[FeedId] = set()
        for i in range(len(self.nodes)):
            if self.alive(i):
                out.update(self.node(i).replicated())
        return out

    def traffic(self) -> TrafficStats:
        """Traffic summed over every node and every life of it."""
        total = TrafficStats()
        for sim in self.nodes:
            for t in sim.traffic:
                total.control_bytes += t.control_bytes
                total.entry_bytes += t.entry_bytes
                total.entries += t.entries
                total.note_sizes.extend(t.note_sizes)
        return total

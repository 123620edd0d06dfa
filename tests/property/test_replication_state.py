"""Stateful test: random publishes, links, losses, crashes and follows; nothing invalid is
stored, and every node that wants a feed converges once the network heals."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from meshnode.codec.content import ContactAction
from meshnode.sim.mesh import LinkSpec, Mesh
from tests.fakes import everyone_follows

N = 4
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]
node_ids = st.integers(0, N - 1)


class Replication(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mesh = Mesh(N, seed=99)
        everyone_follows(self.mesh, N)
        # Frames are dropped by a rule, so the core must not take delivery for granted.
        self.mesh.add_links(EDGES, LinkSpec(reliable=False))
        self.posts = 0

    def _live(self, i: int) -> bool:
        return self.mesh.alive(i)

    @rule(i=node_ids)
    def publish(self, i: int) -> None:
        if self._live(i):
            self.posts += 1
            self.mesh.publish(i, f"post {self.posts}")

    @rule(edge=st.sampled_from(EDGES))
    def cut(self, edge: tuple[int, int]) -> None:
        if self.mesh.links[edge].up:
            self.mesh.cut(*edge)

    @rule(edge=st.sampled_from(EDGES))
    def mend(self, edge: tuple[int, int]) -> None:
        if not self.mesh.links[edge].up:
            self.mesh.mend(*edge)

    @rule(k=st.integers(0, 50))
    def drop_frame(self, k: int) -> None:
        self.mesh.drop_frame(k)

    @rule(seconds=st.floats(0.01, 20))
    def advance(self, seconds: float) -> None:
        self.mesh.run_until_quiet(limit_s=self.mesh.now + seconds)

    @rule(i=node_ids)
    def kill_or_restart(self, i: int) -> None:
        if self._live(i):
            self.mesh.kill(i)
        else:
            self.mesh.restart(i)

    @rule(i=node_ids, j=node_ids, block=st.booleans())
    def follow_or_block(self, i: int, j: int, block: bool) -> None:
        if i != j and self._live(i):
            action = ContactAction.BLOCK if block else ContactAction.FOLLOW
            self.mesh.node(i).set_contact(action, self.mesh.feed(j), timestamp_ms=0)
            self.mesh._pump(i)

    @invariant()
    def nothing_invalid_is_stored(self) -> None:
        for i in range(N):
            if self._live(i):
                report = self.mesh.node(i).check()
                assert report.ok, report.problems

    def teardown(self) -> None:
        mesh = self.mesh
        for i in range(N):
            if not mesh.alive(i):
                mesh.restart(i)
        for edge in EDGES:
            if not mesh.links[edge].up:
                mesh.mend(*edge)
        # Loss during the run may have eaten frames; a healed network must still converge.
        assert mesh.run_until(mesh.clocks_agree, limit_s=mesh.now + 600), "no convergence"


Replication.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
test_replication_state = Replication.TestCase

"""The parts of EBT replication; ``meshnode.core.replication.Replicator`` puts them together.

Each part is a head's worth, and imports only the parts listed above it:

* ``session``: one peer's session: its phases as a transition table, its state in small
  groups; and the vocabulary they all share (``LinkInfo``, ``ReplicationConfig``, ``Host``).
* ``names``: how each side names feeds by index (DEFINE, DEFINE_KEY, WANT_KEY, refs).
* ``notes``: our notes to a peer: what we say about each feed, queued, batched, framed.
* ``push``: pushes and flow control: what to send next, round-robin, within the window.
* ``upstream``: which peer pushes each feed to us (eager), stalls, switching parents.
* ``repair``: lossy links: resend requests, resyncs, forgiven stale entries.
* ``opening``: HELLO both ways, then the leader's whole clock or a delta.
"""

from __future__ import annotations

__all__: list[str] = []

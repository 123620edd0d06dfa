"""The parts of EBT replication; ``meshnode.core.replication.Replicator`` puts them together.

* ``session``: one peer's session, its phases as a transition table, its state.
"""

from __future__ import annotations

__all__: list[str] = []

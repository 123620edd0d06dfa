"""Ingest many untrusted entries at once (a bundle file, a USB drive).

``ingest_all`` verifies and stores entries in order through ``Node.ingest``, flushing every
``BATCH`` entries and yielding the count done so far between batches (a caller on an event
loop lets other work run there). Entries refused only because no follow reached their feed
yet are tried again once a contact entry among them changed the follow graph.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.codec.message import ContentType
from meshnode.core.feed import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from meshnode.core.feed import IngestResult
    from meshnode.core.node import Node

__all__ = ["BATCH", "ImportTally", "ingest_all"]

# Flush and report every this many entries: each count yielded means the entries before it
# are on disk, which is what a crash test may rely on.
BATCH = 1000


@dataclass(slots=True)
class ImportTally:
    """Counts of what an import did, with rejection reasons grouped."""

    added: int = 0
    held: int = 0
    unwanted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def count(self, result: IngestResult) -> None:
        """Add one ingest result."""
        if result.outcome is Outcome.ADDED:
            self.added += 1
        elif result.outcome is Outcome.HELD:
            self.held += 1
        elif result.outcome is Outcome.UNWANTED:
            self.unwanted += 1
        else:
            self.rejected += 1
            # Group "gap: holds up to seq 4, got seq 9" with its kin.
            self.reasons[re.sub(r"\d+", "N", result.reason or result.outcome.value)] += 1

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "added": self.added,
            "held": self.held,
            "unwanted": self.unwanted,
            "rejected": self.rejected,
            "reasons": dict(self.reasons.most_common()),
        }


def ingest_all(node: Node, raws: Iterable[bytes], tally: ImportTally) -> Iterator[int]:
    """Ingest ``raws`` in order into ``tally``; yield the count done after each batch."""
    unwanted: list[bytes] = []
    graph_changed = False
    done = 0
    for raw in raws:
        graph_changed |= _ingest(node, raw, tally, unwanted)
        done += 1
        if done % BATCH == 0:
            node.flush()
            yield done
    # A follow later in the batch can make earlier entries wanted: retry those.
    while unwanted and graph_changed:
        retry, unwanted, graph_changed = unwanted, [], False
        for raw in retry:
            graph_changed |= _ingest(node, raw, tally, unwanted)
    tally.unwanted += len(unwanted)
    node.flush()
    if done % BATCH or not done:
        yield done


def _ingest(node: Node, raw: bytes, tally: ImportTally, unwanted: list[bytes]) -> bool:
    """Ingest one entry; True when it was a contact entry that may change the follow graph."""
    result = node.ingest(raw)
    if result.outcome is Outcome.UNWANTED:
        unwanted.append(raw)
        return False
    tally.count(result)
    entry = result.entry
    return (
        result.outcome is Outcome.ADDED
        and entry is not None
        and entry.content_type == ContentType.CONTACT
    )

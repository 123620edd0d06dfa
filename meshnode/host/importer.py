"""Ingest many untrusted entries at once (a bundle file, a USB drive).

``ingest_all`` verifies and stores entries in order through ``Node.ingest``, flushing every
``BATCH`` entries and yielding the count done so far between batches (a caller on an event
loop lets other work run there). A flat-file store writes each batch's entries in one go
(``FileStore.holding``): they are handed to the OS, then fsynced, before the count is
yielded. Entries refused only because no follow reached their feed yet are tried again
once a contact entry among them changed the follow graph (up to MAX_RETRY_BYTES of them).
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from meshnode.codec.message import ContentType
from meshnode.core.feed import Outcome
from meshnode.store.flatfile import FileStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager

    from meshnode.core.feed import IngestResult
    from meshnode.core.node import Node

__all__ = ["BATCH", "MAX_RETRY_BYTES", "ImportTally", "ingest_all"]

# Flush and report every this many entries: each count yielded means the entries before it
# are on disk, which is what a crash test may rely on.
BATCH = 1000
# Unwanted entries kept to try again once a follow among them arrives: a bundle of
# strangers' feeds must not fill memory. Past it they are counted unwanted, not kept.
MAX_RETRY_BYTES = 32 << 20


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
    unwanted = _Retry()
    graph_changed = False
    done = 0
    # The node's verifier checks signatures of the entries ahead elsewhere, if it can.
    checked = node.verifier.checked(raws, node.network_key)
    try:
        while True:
            with _holding(node):  # never across a yield: other appends are not held
                before = done
                for raw, signature_ok in islice(checked, BATCH):
                    graph_changed |= _ingest(node, raw, tally, unwanted, signature_ok)
                    done += 1
            if done - before < BATCH:
                break
            node.flush()
            yield done
    finally:
        checked.close()  # a caller that stops early ends the verifier's workers
    # A follow later in the batch can make earlier entries wanted: retry those.
    while unwanted.raws and graph_changed:
        retry, unwanted, graph_changed = unwanted, _Retry(dropped=unwanted.dropped), False
        for raw in retry.raws:
            graph_changed |= _ingest(node, raw, tally, unwanted)
    tally.unwanted += len(unwanted.raws) + unwanted.dropped
    node.flush()
    if done % BATCH or not done:
        yield done


def _holding(node: Node) -> AbstractContextManager[None]:
    """Gather a batch's appends into one write where the store can."""
    return node.store.holding() if isinstance(node.store, FileStore) else nullcontext()


@dataclass(slots=True)
class _Retry:
    """Unwanted entries kept for another try, within MAX_RETRY_BYTES; the rest counted."""

    raws: list[bytes] = field(default_factory=list)
    size_bytes: int = 0
    dropped: int = 0

    def add(self, raw: bytes) -> None:
        if self.size_bytes + len(raw) > MAX_RETRY_BYTES:
            self.dropped += 1
            return
        self.raws.append(raw)
        self.size_bytes += len(raw)


def _ingest(
    node: Node, raw: bytes, tally: ImportTally, unwanted: _Retry, signature_ok: bool | None = None
) -> bool:
    """Ingest one entry; True when it was a contact entry that may change the follow graph."""
    result = node.ingest(raw, signature_ok=signature_ok)
    if result.outcome is Outcome.UNWANTED:
        unwanted.add(raw)
        return False
    tally.count(result)
    entry = result.entry
    return (
        result.outcome is Outcome.ADDED
        and entry is not None
        and entry.content_type == ContentType.CONTACT
    )

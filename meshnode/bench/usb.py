"""USB benchmark: 100,000 entries over 1,000 feeds to an empty drive, then into an empty node.

Setup, not timed: node A's FileStore holds the entries (A follows the 1,000 authors);
node B follows them too and holds nothing. Timed: ``meshnode usb sync`` of A to an empty
drive directory (``to_drive_entries_per_s``), then of B from it (``from_drive_entries_per_s``:
read, sha256, lz4, verify, store; B writes nothing back but its clock). ``verify_per_s``
is bare PyNaCl verification of the same entries in the same run;
``from_drive_ratio = from_drive_entries_per_s / verify_per_s`` (goal >= 0.8).
``drive_bytes_per_entry``: bytes of the drive folder per entry. Medians of ``rounds``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from meshnode.bench.ingest import _time_verify, make_feeds
from meshnode.codec.content import ContactAction
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.usb.drive import init_drive
from meshnode.usb.merge import sync_here

__all__ = ["bench_usb"]

_TS_MS = 1_700_000_000_000


def bench_usb(entries: int = 100_000, feeds: int = 1_000, rounds: int = 3) -> dict[str, object]:
    """Both directions through a drive directory, against raw verification."""
    chains = make_feeds(feeds, entries // feeds)
    raws = [e.raw for chain in chains for e in chain]
    authors = [chain[0].author for chain in chains]
    runs = []
    verifies = []
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-usb-") as tmp:
        root = Path(tmp)
        a = _node(root / "a", 0xAA, authors)
        for raw in raws:
            a.ingest(raw)
        a.flush()
        for r in range(rounds):
            runs.append(_round(a, root / f"round{r}", authors, len(raws)))
            verifies.append(_time_verify(raws))
        a.close()
    to_s = statistics.median(run["to_s"] for run in runs)
    from_s = statistics.median(run["from_s"] for run in runs)
    verify_s = statistics.median(verifies)
    return {
        "entries": len(raws),
        "feeds": feeds,
        "rounds": rounds,
        "to_drive_entries_per_s": round(len(raws) / to_s),
        "from_drive_entries_per_s": round(len(raws) / from_s),
        "verify_per_s": round(len(raws) / verify_s),
        "from_drive_ratio": round(verify_s / from_s, 3),
        "drive_bytes_per_entry": round(
            statistics.median(run["bytes"] for run in runs) / len(raws), 1
        ),
    }


def _node(path: Path, who: int, authors: list) -> Node:  # type: ignore[type-arg]
    node = Node(
        Identity(bytes([who]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=FileStore(path, StoreConfig()),
        rng=random.Random(who),
    )
    for author in authors:
        node.set_contact(ContactAction.FOLLOW, author, timestamp_ms=_TS_MS)
    return node


def _round(a: Node, root: Path, authors: list, total: int) -> dict[str, float]:  # type: ignore[type-arg]
    drive = root / "drive"
    drive.mkdir(parents=True)
    init_drive(drive, DEFAULT_NETWORK_KEY, 1 << 30)
    start = time.perf_counter()
    wrote = sync_here(a, drive, now_ms=_TS_MS).to_drive
    to_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (drive / "meshnode").rglob("*") if p.is_file())
    b = _node(root / "b", 0xBB, authors)
    start = time.perf_counter()
    got = sync_here(b, drive, now_ms=_TS_MS).from_drive.added
    from_s = time.perf_counter() - start
    b.close()
    if wrote < total or got != total:
        raise RuntimeError(f"wrote {wrote}, read {got} of {total} entries")
    return {"to_s": to_s, "from_s": from_s, "bytes": float(size)}

"""USB benchmark: 100,000 entries over 1,000 feeds to an empty drive, then into an empty node.

Setup, not timed: node A's FileStore holds the entries (A follows the 1,000 authors);
node B follows them too and holds nothing. Timed: ``meshnode usb sync`` of A to an empty
drive directory (``to_drive_entries_per_s``), then of B from it (``from_drive_entries_per_s``:
read, sha256, lz4, verify, store; B writes nothing back but its clock). ``verify_per_s``
is bare PyNaCl verification of the same entries on one core in the same run;
``from_drive_ratio = from_drive_entries_per_s / verify_per_s`` with B checking signatures
by ``cores`` worker processes (host.verify; default: the cores this process may use; goal
>= 1.3 on 2 cores), and ``from_drive_ratio_one_thread`` with ``verify_threads = 1``.
``drive_bytes_per_entry``: bytes of the drive folder per entry. Medians of ``rounds``.
As in ``bench ingest``, ``from_drive_cpu_us_per_entry``, ``workers_cpu_us_per_entry`` and
``from_drive_ratio_cpu_bound`` give the CPU time, for a machine that others share.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from meshnode.bench.ingest import _cpu_s, _time_verify, make_feeds
from meshnode.codec.content import ContactAction
from meshnode.core.node import Node
from meshnode.host.verify import make_verifier, usable_cores
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.usb.drive import init_drive
from meshnode.usb.merge import sync_here

__all__ = ["bench_usb"]

_TS_MS = 1_700_000_000_000


def bench_usb(
    entries: int = 100_000, feeds: int = 1_000, rounds: int = 3, threads: int = 0
) -> dict[str, object]:
    """Both directions through a drive directory, against one core's raw verification."""
    cores = threads or usable_cores()
    chains = make_feeds(feeds, entries // feeds)
    raws = [e.raw for chain in chains for e in chain]
    authors = [chain[0].author for chain in chains]
    runs = []
    singles = []
    verifies = []
    verify_cpus = []
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-usb-") as tmp:
        root = Path(tmp)
        a = _node(root / "a", 0xAA, authors, 1)
        for raw in raws:
            a.ingest(raw)
        a.flush()
        for r in range(rounds):
            runs.append(_round(a, root / f"round{r}", authors, len(raws), cores))
            singles.append(_round(a, root / f"single{r}", authors, len(raws), 1)["from_s"])
            own = _cpu_s()[0]
            verifies.append(_time_verify(raws))
            verify_cpus.append(_cpu_s()[0] - own)
        a.close()
    to_s = statistics.median(run["to_s"] for run in runs)
    from_s = statistics.median(run["from_s"] for run in runs)
    single_s = statistics.median(singles)
    verify_s = statistics.median(verifies)
    own_s = statistics.median(run["own_cpu_s"] for run in runs)
    workers_s = statistics.median(run["workers_cpu_s"] for run in runs)
    cpu_bound_s = max(own_s, (own_s + workers_s) / cores)
    return {
        "entries": len(raws),
        "feeds": feeds,
        "rounds": rounds,
        "cores": cores,
        "to_drive_entries_per_s": round(len(raws) / to_s),
        "from_drive_entries_per_s": round(len(raws) / from_s),
        "verify_per_s": round(len(raws) / verify_s),
        "from_drive_ratio": round(verify_s / from_s, 3),
        "from_drive_entries_per_s_one_thread": round(len(raws) / single_s),
        "from_drive_ratio_one_thread": round(verify_s / single_s, 3),
        "from_drive_cpu_us_per_entry": round(own_s / len(raws) * 1e6, 1),
        "workers_cpu_us_per_entry": round(workers_s / len(raws) * 1e6, 1),
        "from_drive_ratio_cpu_bound": round(statistics.median(verify_cpus) / cpu_bound_s, 3),
        "drive_bytes_per_entry": round(
            statistics.median(run["bytes"] for run in runs) / len(raws), 1
        ),
    }


def _node(path: Path, who: int, authors: list, threads: int) -> Node:  # type: ignore[type-arg]
    node = Node(
        Identity(bytes([who]) * 32),
        network_key=DEFAULT_NETWORK_KEY,
        store=FileStore(path, StoreConfig()),
        rng=random.Random(who),
        verifier=make_verifier(threads),
    )
    for author in authors:
        node.set_contact(ContactAction.FOLLOW, author, timestamp_ms=_TS_MS)
    return node


def _round(a: Node, root: Path, authors: list, total: int, threads: int) -> dict[str, float]:  # type: ignore[type-arg]
    drive = root / "drive"
    drive.mkdir(parents=True)
    init_drive(drive, DEFAULT_NETWORK_KEY, 1 << 30)
    start = time.perf_counter()
    wrote = sync_here(a, drive, now_ms=_TS_MS).to_drive
    to_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (drive / "meshnode").rglob("*") if p.is_file())
    b = _node(root / "b", 0xBB, authors, threads)
    own, workers = _cpu_s()
    start = time.perf_counter()
    got = sync_here(b, drive, now_ms=_TS_MS).from_drive.added
    from_s = time.perf_counter() - start
    own_after, workers_after = _cpu_s()
    b.close()
    if wrote < total or got != total:
        raise RuntimeError(f"wrote {wrote}, read {got} of {total} entries")
    return {
        "to_s": to_s,
        "from_s": from_s,
        "bytes": float(size),
        "own_cpu_s": own_after - own,
        "workers_cpu_s": workers_after - workers,
    }

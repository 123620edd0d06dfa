"""Ingest benchmark: decode + verify + validate + append + index, against raw verification.

Entries are signed up front (not timed). The timed run ingests them round-robin across
feeds into a fresh FileStore with the default (batched) fsync policy, then flushes, with
signatures checked ahead on ``cores`` threads (host.verify; default: the cores this process
may use), and again with ``verify_threads = 1``. The same entries are then verified with
the bare PyNaCl call on one core, which is one core's physical limit. The three are timed
alternately for three rounds and the medians compared: ``ratio`` (goal >= 0.7 x cores, up
to 4), ``ratio_one_thread``, and ``overhead_us_per_entry``, the one-thread ingest's time per
entry beyond the bare check (goal <= 12).
"""

from __future__ import annotations

import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nacl.bindings

from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.core.feed import Outcome
from meshnode.core.node import Node
from meshnode.host.verify import make_verifier, usable_cores
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import FeedId, MsgId, Seq

__all__ = ["bench_ingest", "make_feeds"]

_TS_MS = 1_700_000_000_000


def make_feeds(feeds: int, per_feed: int, content_bytes: int = 60) -> list[list[Entry]]:
    """Signed chains of POST entries, one per author, deterministic."""
    out = []
    for f in range(feeds):
        author = Identity(f.to_bytes(4, "big") * 8)
        previous: MsgId | None = None
        chain = []
        for seq in range(1, per_feed + 1):
            text = f"feed {f} entry {seq} ".ljust(content_bytes, ".").encode()
            entry = create_entry(
                author,
                DEFAULT_NETWORK_KEY,
                seq=Seq(seq),
                previous=previous,
                timestamp_ms=_TS_MS + seq,
                content_type=ContentType.POST,
                content=text,
            )
            chain.append(entry)
            previous = entry.id
        out.append(chain)
    return out


def _time_ingest(raws: list[bytes], authors: list[FeedId], threads: int) -> float:
    """Seconds to ingest ``raws`` into a fresh FileStore (batched fsync), flush included,
    with signatures checked on ``threads`` threads."""
    verifier = make_verifier(threads)
    me = Identity(b"\xee" * 32)
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-") as tmp:
        node = Node(
            me,
            network_key=DEFAULT_NETWORK_KEY,
            store=FileStore(Path(tmp), StoreConfig()),
            rng=random.Random(1),
        )
        for author in authors:
            node.set_contact(ContactAction.FOLLOW, author, timestamp_ms=_TS_MS)
        start = time.perf_counter()
        added = sum(
            1
            for raw, ok in verifier.checked(raws, DEFAULT_NETWORK_KEY)
            if node.ingest(raw, signature_ok=ok).outcome is Outcome.ADDED
        )
        node.flush()
        elapsed = time.perf_counter() - start
        node.close()
    if added != len(raws):
        raise RuntimeError(f"only {added} of {len(raws)} entries were added")
    return elapsed


def _time_verify(raws: list[bytes]) -> float:
    """Seconds for bare PyNaCl verification of the same entries."""
    start = time.perf_counter()
    for raw in raws:
        nacl.bindings.crypto_sign_open(raw[-64:] + DEFAULT_NETWORK_KEY + raw[:-64], raw[1:33])
    return time.perf_counter() - start


def bench_ingest(
    entries: int = 50_000, feeds: int = 100, rounds: int = 3, threads: int = 0
) -> dict[str, object]:
    """Time ingest of ``entries`` over ``feeds`` against one core's raw verification."""
    cores = threads or usable_cores()
    chains = make_feeds(feeds, entries // feeds)
    raws = [chain[i].raw for i in range(entries // feeds) for chain in chains]
    authors = [chain[0].author for chain in chains]
    # Alternate the two measurements and keep medians: the machine is shared and noisy.
    ingests = []
    singles = []
    verifies = []
    for _ in range(rounds):
        ingests.append(_time_ingest(raws, authors, cores))
        singles.append(_time_ingest(raws, authors, 1))
        verifies.append(_time_verify(raws))
    ingest_s = statistics.median(ingests)
    single_s = statistics.median(singles)
    verify_s = statistics.median(verifies)
    return {
        "entries": len(raws),
        "feeds": feeds,
        "rounds": rounds,
        "cores": cores,
        "ingest_s": round(ingest_s, 3),
        "entries_per_s": round(len(raws) / ingest_s),
        "verify_per_s": round(len(raws) / verify_s),
        "ratio": round(verify_s / ingest_s, 3),
        "entries_per_s_one_thread": round(len(raws) / single_s),
        "ratio_one_thread": round(verify_s / single_s, 3),
        "overhead_us_per_entry": round((single_s - verify_s) / len(raws) * 1e6, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }

"""Reopen benchmark: open a FileStore of 1,000,000 entries (1,000 feeds of 1,000).

Setup, not timed: entries have the exact full-form layout of meshnode.codec.message and
are chained by id, but carry a fixed placeholder signature, because signing a million
entries takes minutes and opening a store never verifies signatures. They are appended
round-robin across feeds through ``FileStore.append`` (fsync "never"), then the store
is closed, which writes its index checkpoint.

Each open is measured in a fresh interpreter, so ``rss_mb`` (that process's peak
resident set, interpreter and imports included) reflects only the open:

* ``open_s``, ``rss_mb``: a clean open (goals: < 1.0 s, < 60 MB).
* ``crash_open_s``: the index checkpoint is put back to the last one written while
  appending, as after ``kill -9``; open scans the ``crash_tail_mb`` of log after it.
* ``rebuild_s``: no checkpoint at all; open rebuilds the index from the whole log.
"""

from __future__ import annotations

import hashlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshnode.codec.message import ContentType, Entry, decode_entry
from meshnode.codec.varint import encode_varint
from meshnode.secure.identity import KEY_BYTES, SIGNATURE_BYTES
from meshnode.store._index import decode_checkpoint
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import FeedId, MsgId, Seq

__all__ = ["bench_reopen", "measure_open"]

_TS_MS = 1_700_000_000_000
_HEADER = bytes((0x10,))  # format version 1, uncompressed, full form
_PLACEHOLDER_SIGNATURE = b"\x5a" * SIGNATURE_BYTES
_CHILD = (
    "import json, sys; from meshnode.bench.reopen import measure_open; "
    "print(json.dumps(measure_open(sys.argv[1])))"
)


def _entry(author: FeedId, seq: int, previous: MsgId | None) -> Entry:
    """A POST entry laid out as create_entry does, with a placeholder signature."""
    content = f"entry {seq} of a feed in the reopen benchmark".encode()
    body = b"".join(
        (
            _HEADER,
            author,
            encode_varint(seq),
            previous or b"",
            encode_varint(_TS_MS + seq),
            encode_varint(ContentType.POST),
            content,
        )
    )
    raw = body + _PLACEHOLDER_SIGNATURE
    return Entry(
        author=author,
        seq=Seq(seq),
        previous=previous,
        timestamp_ms=_TS_MS + seq,
        content_type=ContentType.POST,
        compressed=False,
        content=content,
        raw=raw,
        id=MsgId(hashlib.sha256(raw).digest()),
    )


def _build(path: Path, feeds: int, per_feed: int) -> bytes:
    """Fill a store; returns the last checkpoint written before close."""
    authors = [FeedId(hashlib.sha256(b"feed %d" % f).digest()[:KEY_BYTES]) for f in range(feeds)]
    previous: list[MsgId | None] = [None] * feeds
    first = _entry(authors[0], 1, None)
    if decode_entry(first.raw) != first:
        raise AssertionError("benchmark entries do not follow the codec layout")
    with FileStore(path, StoreConfig(fsync="never")) as store:
        for seq in range(1, per_feed + 1):
            for f, author in enumerate(authors):
                entry = _entry(author, seq, previous[f])
                store.append(entry)
                previous[f] = entry.id
        return (path / "index.bin").read_bytes()


def _peak_rss_mb() -> float:
    """Peak resident set of this process since exec."""
    try:
        # VmHWM belongs to this process image; ru_maxrss also counts the parent's
        # memory, which a vfork()ed child shares until its exec.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_open(path: str) -> dict[str, object]:
    """Open the store at ``path``; run in a fresh process (see _CHILD)."""
    start = time.perf_counter()
    store = FileStore(path)
    open_s = time.perf_counter() - start
    rss_mb = _peak_rss_mb()
    entries = store.stats().entries
    store.close()
    return {"open_s": open_s, "rss_mb": rss_mb, "entries": entries}


def _open_in_child(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def bench_reopen(entries: int = 1_000_000, feeds: int = 1000) -> dict[str, object]:
    """Build a store of ``entries`` over ``feeds``, then time opening it three ways."""
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-") as tmp:
        path = Path(tmp)
        start = time.perf_counter()
        periodic = _build(path, feeds, entries // feeds)
        build_s = time.perf_counter() - start
        segments = {int(p.stem): p.stat().st_size for p in (path / "log").glob("*.seg")}
        log_bytes = sum(segments.values())
        index_bytes = (path / "index.bin").stat().st_size
        clean = _open_in_child(path)
        (path / "index.bin").write_bytes(periodic)
        crash = _open_in_child(path)
        (path / "index.bin").unlink()
        rebuild = _open_in_child(path)
    covered = decode_checkpoint(io.BytesIO(periodic))[1]
    tail_bytes = segments[covered.segment] - covered.pos
    tail_bytes += sum(size for n, size in segments.items() if n > covered.segment)
    return {
        "entries": int(clean["entries"]),
        "feeds": feeds,
        "open_s": round(clean["open_s"], 3),
        "rss_mb": round(clean["rss_mb"], 1),
        "crash_open_s": round(crash["open_s"], 3),
        "crash_tail_mb": round(tail_bytes / 2**20, 1),
        "rebuild_s": round(rebuild["open_s"], 3),
        "log_mb": round(log_bytes / 2**20, 1),
        "index_mb": round(index_bytes / 2**20, 1),
        "build_s": round(build_s, 1),
    }

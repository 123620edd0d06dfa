"""Signature checks on a pool of worker threads, ahead of the node's one ingest thread.

PyNaCl releases the GIL while it checks a signature, so N threads check about N times as
many as one. ``PoolVerifier.checked`` cuts the entries into batches of ``BATCH_ENTRIES``,
keeps at most ``IN_FLIGHT_PER_THREAD`` batches per thread submitted ahead (memory does not
grow with the input), and hands the verdicts back in order while the caller ingests.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from meshnode.core.verifier import InlineVerifier, Verifier, signatures_valid

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator
    from concurrent.futures import Future

__all__ = ["BATCH_ENTRIES", "IN_FLIGHT_PER_THREAD", "PoolVerifier", "make_verifier", "usable_cores"]

BATCH_ENTRIES = 256  # ~60 KB of entries: the pool's hand-off costs nothing per entry
IN_FLIGHT_PER_THREAD = 2  # each thread has the next batch waiting while it checks one


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, so ``taskset`` counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on this OS
        return max(1, os.cpu_count() or 1)


def make_verifier(threads: int = 0) -> Verifier:
    """A verifier with ``threads`` workers (0: ``usable_cores()``); 1 gives no threads."""
    threads = threads or usable_cores()
    return PoolVerifier(threads) if threads > 1 else InlineVerifier()


class PoolVerifier:
    """Checks signatures on ``threads`` worker threads, which live only while a batch path
    runs (an idle daemon keeps no thread for it)."""

    def __init__(self, threads: int, *, batch_entries: int = BATCH_ENTRIES) -> None:
        if threads < 1 or batch_entries < 1:
            raise ValueError("a pool needs at least one thread and one entry a batch")
        self.threads = threads
        self.batch_entries = batch_entries

    def checked(
        self, raws: Iterable[bytes], network_key: bytes
    ) -> Generator[tuple[bytes, bool | None]]:
        """Each of ``raws`` in order with its signature's verdict, checked on the pool."""
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="meshnode-verify")
        it = iter(raws)
        ahead: deque[tuple[list[bytes], Future[list[bool | None]]]] = deque()
        limit = self.threads * IN_FLIGHT_PER_THREAD
        batch: list[bytes] = []
        failed: Exception | None = None
        try:
            while True:
                try:
                    batch.append(next(it))
                except StopIteration:
                    break
                except Exception as exc:  # raised below, after the entries that came first
                    failed = exc
                    break
                if len(batch) == self.batch_entries:
                    ahead.append((batch, pool.submit(signatures_valid, batch, network_key)))
                    batch = []
                    if len(ahead) >= limit:
                        yield from _zip(*ahead.popleft())
            if batch:
                ahead.append((batch, pool.submit(signatures_valid, batch, network_key)))
            while ahead:
                yield from _zip(*ahead.popleft())
        finally:
            # Done, or the caller stopped early: drop the work not begun, end the threads.
            pool.shutdown(wait=True, cancel_futures=True)
        if failed is not None:
            # The source broke (a damaged bundle): one thread would have taken every
            # entry before the damage, then raised; so does the pool.
            raise failed


def _zip(
    batch: list[bytes], future: Future[list[bool | None]]
) -> Iterator[tuple[bytes, bool | None]]:
    return zip(batch, future.result(), strict=True)

"""Signature checks in worker processes, ahead of the node's one ingest thread.

PyNaCl releases the GIL while it checks a signature, but threads still need the GIL between
two checks, and the ingest thread holds it nearly all the time: measured on 2 cores, two
threads beside a busy ingest thread check barely more than one. So the pool checks in
worker processes (``host.verify_worker``), each with its GIL, fed through pipes.

``PoolVerifier.checked`` cuts the entries into batches of ``BATCH_ENTRIES`` (or about
``BATCH_BYTES``), keeps at most ``IN_FLIGHT_PER_WORKER`` batches per worker sent ahead (memory
does not grow with the input), and hands the verdicts back in order while the caller
ingests. The workers start when a second batch is on its way (a small input starts
nothing) and end with the call, so an idle daemon keeps no process for them; until a
worker has started, the node checks the batches itself, and so it does for the batches of
a worker that died.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
from collections import deque
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

import meshnode
from meshnode.core.verifier import InlineVerifier, Verifier
from meshnode.host.verify_worker import (
    MAX_ENTRY_BYTES,
    decode_verdicts,
    encode_batch,
    read_frame,
    write_frame,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

__all__ = [
    "BATCH_BYTES",
    "BATCH_ENTRIES",
    "IN_FLIGHT_PER_WORKER",
    "PoolVerifier",
    "make_verifier",
    "usable_cores",
]

log = logging.getLogger(__name__)

BATCH_ENTRIES = 256  # ~60 KB of entries, ~10 ms of checks: the pipes cost little per entry
BATCH_BYTES = 56 << 10  # a batch of long entries is cut sooner, so it fits a pipe's buffer
IN_FLIGHT_PER_WORKER = 2  # each worker has the next batch waiting while it checks one
_PIPE_BYTES = 256 << 10  # asked of Linux: two batches fit, so a send never waits
_END_WAIT_S = 10.0  # a worker ends within one batch once its input is closed

_Verdicts = list[bool | None]
# A batch on its way: its entries, and the worker checking it (None: the node checks it).
_Ahead = tuple[list[bytes], "_Worker | None"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, so ``taskset`` counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on this OS
        return max(1, os.cpu_count() or 1)


def make_verifier(threads: int = 0) -> Verifier:
    """A verifier with ``threads`` workers (0: ``usable_cores()``); 1 starts none."""
    threads = threads or usable_cores()
    return PoolVerifier(threads) if threads > 1 else InlineVerifier()


class PoolVerifier:
    """Checks signatures in ``threads`` worker processes, which live only while a batch
    path runs (an idle daemon keeps none)."""

    def __init__(
        self, threads: int, *, batch_entries: int = BATCH_ENTRIES, check_while_starting: bool = True
    ) -> None:
        """``check_while_starting=False`` waits for the workers instead (tests use it)."""
        if threads < 1 or batch_entries < 1:
            raise ValueError("a pool needs at least one worker and one entry a batch")
        self.threads = threads
        self.batch_entries = batch_entries
        self.check_while_starting = check_while_starting

    def checked(
        self, raws: Iterable[bytes], network_key: bytes
    ) -> Generator[tuple[bytes, bool | None]]:
        """Each of ``raws`` in order with its signature's verdict, checked by the workers."""
        source = _Batches(raws, self.batch_entries)
        workers: _Workers | None = None
        ahead: deque[_Ahead] = deque()
        try:
            while batch := source.take():
                if workers is None and not source.ended:  # more follows: worth the workers
                    workers = _Workers(
                        self.threads, network_key, wait=not self.check_while_starting
                    )
                while workers is not None and workers.all_full():
                    yield from _verdicts(*ahead.popleft())
                # No worker ready yet (starting, or all dead): the node checks the batch.
                ahead.append((batch, workers.send(batch) if workers is not None else None))
                while ahead and ahead[0][1] is None:
                    yield from _verdicts(*ahead.popleft())
            while ahead:
                yield from _verdicts(*ahead.popleft())
        finally:
            # Done, or the caller stopped early: the workers drop what they were sent.
            if workers is not None:
                workers.end()
        if source.failed is not None:
            # The source broke (a damaged bundle): one thread would have taken every
            # entry before the damage, then raised; so does the pool.
            raise source.failed


def _verdicts(batch: list[bytes], worker: _Worker | None) -> Iterator[tuple[bytes, bool | None]]:
    verdicts = worker.receive(len(batch)) if worker is not None else None
    return zip(batch, verdicts if verdicts is not None else repeat(None), strict=False)


class _Batches:
    """The entries of a source in batches, keeping the error that ended it."""

    def __init__(self, raws: Iterable[bytes], batch_entries: int) -> None:
        self._it = iter(raws)
        self._batch_entries = batch_entries
        self.ended = False
        self.failed: Exception | None = None

    def take(self) -> list[bytes]:
        """The next batch; empty once the source has ended."""
        batch: list[bytes] = []
        size = 0
        while not self.ended and len(batch) < self._batch_entries and size < BATCH_BYTES:
            try:
                raw = next(self._it)
            except StopIteration:
                self.ended = True
                break
            except Exception as exc:  # raised after the entries that came first
                self.failed = exc
                self.ended = True
                break
            batch.append(raw)
            size += len(raw)
        return batch


class _Workers:
    """The worker processes of one ``checked`` call."""

    def __init__(self, count: int, network_key: bytes, *, wait: bool) -> None:
        self.all: list[_Worker] = []
        for _ in range(count):
            try:
                self.all.append(_Worker(network_key))
            except OSError as exc:  # no interpreter to start (an embedded Python): check here
                log.warning("cannot start a signature worker (%s): checking here", exc)
                break
        self._starting = list(self.all)
        if wait:
            for worker in self.all:
                worker.started(read_frame(worker.rfd))
            self._starting = []

    def _started(self) -> list[_Worker]:
        if self._starting:
            # A worker says it is ready with an empty frame; look without waiting.
            readable, _, _ = select.select([w.rfd for w in self._starting], [], [], 0)
            for worker in [w for w in self._starting if w.rfd in readable]:
                worker.started(read_frame(worker.rfd))
                self._starting.remove(worker)
        return [w for w in self.all if w.ready and w.alive]

    def all_full(self) -> bool:
        """Whether some worker is ready and every ready one has its batches in flight."""
        started = self._started()
        return bool(started) and all(w.in_flight >= IN_FLIGHT_PER_WORKER for w in started)

    def send(self, batch: list[bytes]) -> _Worker | None:
        """Send ``batch`` to the least busy ready worker; None if none could take it."""
        started = [w for w in self._started() if w.in_flight < IN_FLIGHT_PER_WORKER]
        if not started or any(len(raw) > MAX_ENTRY_BYTES for raw in batch):
            return None
        worker = min(started, key=lambda w: w.in_flight)
        return worker if worker.send(encode_batch(batch)) else None

    def end(self) -> None:
        """Close every worker's input and wait for it to end."""
        for worker in self.all:
            worker.end()


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, network_key: bytes) -> None:
        env = dict(os.environ)
        # The worker imports meshnode from where this process found it.
        root = str(Path(meshnode.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshnode.host.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        _widen_pipe(self.wfd)
        self.in_flight = 0
        self.ready = False
        self.alive = True
        try:
            write_frame(self.wfd, network_key)
        except OSError:
            self._died("it did not take the network key")

    def started(self, hello: bytes | None) -> None:
        """Take the worker's first frame: empty when it is ready."""
        self.ready = hello == b""
        if not self.ready:
            self._died("it did not start")

    def send(self, payload: bytes) -> bool:
        """Send a request; False (and the worker counts as dead) if it is gone."""
        try:
            write_frame(self.wfd, payload)
        except OSError:
            self._died("its input is closed")
            return False
        self.in_flight += 1
        return True

    def receive(self, count: int) -> _Verdicts | None:
        """The reply to the oldest batch in flight; None if the worker died."""
        self.in_flight -= 1
        if not self.alive:
            return None
        reply = read_frame(self.rfd)
        try:
            if reply is None or len(reply) != count:
                raise ValueError("no reply, or one of the wrong length")
            return decode_verdicts(reply)
        except ValueError as exc:
            self._died(str(exc))
            return None

    def _died(self, why: str) -> None:
        if self.alive:
            log.warning("signature worker %d failed (%s): checking here", self.proc.pid, why)
        self.alive = False

    def end(self) -> None:
        """Close the pipes and reap the process (killed if it does not end in time)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(_END_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _widen_pipe(fd: int) -> None:
    """Ask for a bigger pipe buffer where the OS allows it (Linux); a small one only waits."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setpipe, _PIPE_BYTES)

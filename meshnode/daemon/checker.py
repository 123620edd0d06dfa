"""Signature checks in worker processes for entries streaming in over the LAN (asyncio side).

While a sync streams, the event loop's thread decodes, chains and stores entries and holds
the GIL nearly all the time: a worker *thread* returning from a check waits for the GIL up
to ``sys.getswitchinterval()`` (5 ms) each time, so it checks a few hundred a second. A
worker *process* has its own interpreter and checks at the speed of a core.

The workers are ``host.verify_worker`` processes (its module docstring specifies the pipe
format), driven here without blocking the loop. They start when a read brings at least
``START_ENTRIES`` entries (a stream, not a single gossiped entry) and end ``IDLE_S`` after the
last batch, so an idle daemon keeps none. The batches of a stream wait for its workers to
start (a few tens of ms; checking them on the loop meanwhile would slow the loop's turns,
and so the start, to hundreds of ms). For a worker that does not start within
``START_TIMEOUT_S``, and for the batches of a worker that died, the verdicts are None:
the node checks those entries itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import meshnode
from meshnode.host.verify_worker import MAX_ENTRY_BYTES, decode_verdicts, encode_batch

if TYPE_CHECKING:
    from asyncio.subprocess import Process

__all__ = ["IDLE_S", "RETRY_S", "START_ENTRIES", "START_TIMEOUT_S", "CheckerPool"]

log = logging.getLogger(__name__)

IDLE_S = 5.0  # the workers end this long after the last batch
RETRY_S = 60.0  # after a worker failed to start, the node checks alone this long
START_ENTRIES = 32  # a read with this many entries is a stream: worth starting the workers
START_TIMEOUT_S = 5.0  # a worker not ready by then is given up (its batches: the node's)
_LEN_BYTES = 4  # each pipe message: length u32 little-endian, then the payload

# The workers import meshnode from where this process found it.
_ROOT = str(Path(meshnode.__file__).resolve().parent.parent)

Verdicts = list[bool | None]


def _message(payload: bytes) -> bytes:
    return len(payload).to_bytes(_LEN_BYTES, "little") + payload


async def _read_message(stream: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await stream.readexactly(_LEN_BYTES), "little")
    return await stream.readexactly(size)


def _unchecked(raws: list[bytes]) -> asyncio.Future[Verdicts]:
    future: asyncio.Future[Verdicts] = asyncio.get_running_loop().create_future()
    future.set_result([None] * len(raws))
    return future


class _Worker:
    """One worker process: batches go in order and their verdicts come back in order."""

    def __init__(self, network_key: bytes) -> None:
        self.ready = False
        self.started = False  # it was ready once
        self.alive = True
        self.waiting: deque[tuple[int, asyncio.Future[Verdicts]]] = deque()
        self._early: list[bytes] = []  # messages submitted before it was ready
        self._proc: Process | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(network_key))

    def submit(self, raws: list[bytes]) -> asyncio.Future[Verdicts]:
        """Send a batch (kept until the worker is ready, while it starts)."""
        future: asyncio.Future[Verdicts] = asyncio.get_running_loop().create_future()
        self.waiting.append((len(raws), future))
        message = _message(encode_batch(raws))
        if self.ready and self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.write(message)
        else:
            self._early.append(message)
        return future

    async def _run(self, network_key: bytes) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        try:
            self._proc = proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "meshnode.host.verify_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(_message(network_key))
            async with asyncio.timeout(START_TIMEOUT_S):
                if await _read_message(proc.stdout) != b"":  # an empty message: ready
                    raise ValueError("the worker did not start")
            self.ready = self.started = True
            proc.stdin.write(b"".join(self._early))
            self._early.clear()
            while True:
                verdicts = decode_verdicts(await _read_message(proc.stdout))
                count, future = self.waiting.popleft()
                if len(verdicts) != count:
                    raise ValueError(f"{len(verdicts)} verdicts for {count} entries")
                if not future.done():
                    future.set_result(verdicts)
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            pass  # it died, was ended, or spoke nonsense: the node checks what it held
        finally:
            self.alive = self.ready = False
            self._early.clear()
            while self.waiting:
                self.waiting.popleft()[1].cancel()
            self._kill()
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.close()
        if self._proc is not None:
            await self._proc.wait()  # reap it

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # ours, by its PID; it holds nothing worth a goodbye

    def close(self) -> None:
        """End the worker; what it had not answered is left to the node."""
        self.alive = self.ready = False
        if self._proc is None:
            self.task.cancel()  # not started yet
        self._kill()  # its output ends, and so does _run


class CheckerPool:
    """``workers`` checker processes shared by the links, started when a stream begins."""

    def __init__(self, workers: int, network_key: bytes) -> None:
        self.workers = workers
        self.network_key = network_key
        self.batches = 0  # batches the workers checked (tests look)
        self._all: list[_Worker] = []
        self._ending: list[asyncio.Task[None]] = []
        self._retry_at = 0.0
        self._busy = 0
        self._idle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """True while worker processes exist."""
        return bool(self._all)

    @property
    def ready(self) -> bool:
        """True when a worker takes batches."""
        return any(w.ready for w in self._all)

    def check(self, raws: list[bytes]) -> asyncio.Future[Verdicts]:
        """The verdicts of ``raws`` (full-form entries) in order; None for each entry left
        to the node (no worker ready yet, or an entry too long for the pipe format)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        dead = [w for w in self._all if not w.alive]
        if any(not w.started for w in dead):
            log.warning("signature checker processes do not start; checking on one thread")
            self._retry_at = asyncio.get_running_loop().time() + RETRY_S
        self._forget(dead)
        if len(raws) >= START_ENTRIES and asyncio.get_running_loop().time() >= self._retry_at:
            self._all += [_Worker(self.network_key) for _ in range(self.workers - len(self._all))]
        # Ready workers, else those still starting (alive, never ready yet).
        ready = [w for w in self._all if w.ready] or [w for w in self._all if w.alive]
        if not ready or max(map(len, raws), default=0) > MAX_ENTRY_BYTES:
            self._arm_idle()
            return _unchecked(raws)
        worker = min(ready, key=lambda w: len(w.waiting))
        self._busy += 1
        self.batches += 1
        future = worker.submit(raws)
        future.add_done_callback(self._batch_done)
        return future

    def _batch_done(self, _: asyncio.Future[Verdicts]) -> None:
        self._busy -= 1
        self._arm_idle()

    def _arm_idle(self) -> None:
        """With no batch out, the workers end unless another comes within IDLE_S."""
        if not self._busy and self._all and self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(IDLE_S, self.close)

    def close(self) -> None:
        """End the workers; the next stream starts them again."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for worker in self._all:
            worker.close()
        self._forget(self._all)

    def _forget(self, workers: list[_Worker]) -> None:
        """Drop ended workers, holding their tasks until they have reaped their process."""
        self._all = [w for w in self._all if w not in workers]
        self._ending = [t for t in self._ending if not t.done()] + [w.task for w in workers]

    async def wait_closed(self) -> None:
        """Wait until the workers that ``close`` ended are gone (reaped)."""
        ending, self._ending = self._ending, []
        await asyncio.gather(*ending, return_exceptions=True)

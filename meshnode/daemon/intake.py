"""Entries received on a link, their signatures checked ahead of the node in order.

One TCP read can carry hundreds of entries. With ``[node] verify_threads`` above 1, the
entries of each read are decoded ahead (core/ebt/ahead.py) and their signatures checked by
the worker processes of ``checker.py`` off the event loop, while the node takes the reads
before it; then the node takes the read's frames in order, each entry with its verdict. At
most ``IN_FLIGHT_PER_WORKER`` reads per worker wait on a link: beyond that the link stops
reading its socket until the node has caught up, so memory does not grow with the input.
With one thread there is no intake: every read goes to the node as it arrives.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.codec.message import Entry
    from meshnode.core.ebt.ahead import EntriesAhead
    from meshnode.daemon.checker import CheckerPool

__all__ = ["IN_FLIGHT_PER_WORKER", "Intake"]

IN_FLIGHT_PER_WORKER = 2  # each worker has the next read waiting while it checks one

Verdicts = list[bool | None]
_Read = tuple[list[bytes], list["Entry | None"], "asyncio.Future[Verdicts] | None"]


class Intake:
    """The reads of one link on their way to the node: checked ahead, taken in order."""

    def __init__(
        self,
        pool: CheckerPool,
        ahead: EntriesAhead,
        take: Callable[[list[bytes], list[Entry | None], Verdicts], None],
        on_failure: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._ahead = ahead
        self._take = take
        self._on_failure = on_failure
        self._queue: deque[_Read] = deque()
        self._limit = pool.workers * IN_FLIGHT_PER_WORKER
        self._room: asyncio.Future[None] | None = None
        self._settled: asyncio.Future[None] | None = None
        self.failure: Exception | None = None

    def receive(self, frames: list[bytes]) -> asyncio.Future[None] | None:
        """Take in one read's frames; a future to wait on before reading more, when full."""
        if self.failure is not None:
            return None
        entries = self._ahead.decode(frames)
        raws = [entry.raw for entry in entries if entry is not None]
        verdicts = self._pool.check(raws) if raws else None
        if not self._queue and (verdicts is None or verdicts.done()):
            self._run(frames, entries, verdicts)  # checked already, or left to the node
            self._ahead.clear()
            return None
        self._queue.append((frames, entries, verdicts))
        if verdicts is not None:
            verdicts.add_done_callback(self._drain)
        if len(self._queue) < self._limit:
            return None
        self._room = asyncio.get_running_loop().create_future()
        return self._room

    async def settle(self) -> None:
        """Wait until the node has taken every read received; raise what failed there."""
        if self._queue:
            self._settled = asyncio.get_running_loop().create_future()
            await self._settled
        if self.failure is not None:
            raise self.failure

    def _drain(self, _: object = None) -> None:
        while self._queue and (self._queue[0][2] is None or self._queue[0][2].done()):
            frames, entries, verdicts = self._queue.popleft()
            if self.failure is None:
                self._run(frames, entries, verdicts)
        if len(self._queue) < self._limit:
            _release(self._room)
            self._room = None
        if not self._queue:
            self._ahead.clear()
            _release(self._settled)
            self._settled = None

    def _run(
        self,
        frames: list[bytes],
        entries: list[Entry | None],
        verdicts: asyncio.Future[Verdicts] | None,
    ) -> None:
        """Hand one read to the node, each entry with its verdict, in order."""
        # A batch the workers dropped (one died, or they were closing) leaves every check
        # to the node.
        ok = verdicts is not None and not verdicts.cancelled() and verdicts.exception() is None
        it = iter(verdicts.result() if ok and verdicts is not None else ())
        checked: Verdicts = [None if entry is None else next(it, None) for entry in entries]
        try:
            self._take(frames, entries, checked)
        except Exception as exc:  # the disk failed: the link ends and serve reports it
            self.failure = exc
            self._queue.clear()
            self._drain()
            self._on_failure()


def _release(waiter: asyncio.Future[None] | None) -> None:
    """Wake whoever waits on ``waiter``; the caller forgets it."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)

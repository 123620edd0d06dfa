"""An asyncio loop whose clock jumps over idle waits, for benchmarks of slow links.

A 1 % duty cycle on a LoRa channel spreads 50 entries over more than an hour. To measure
that with the real radio interface, drivers, ptys and the channel emulator in seconds, the
loop's clock is real time plus an offset: when the loop would block with nothing ready, it
first polls its file descriptors for ``grace_s`` of real time (bytes written to a pty take
a moment to appear at the other end), and if still nothing is ready it adds the rest of
the wait to the offset instead of sleeping. Everything on the loop (``loop.time()``,
``asyncio.sleep``, timeouts) sees the warped clock; threads and the wall clock do not.

A jump taken while bytes are still in flight in the kernel makes them arrive late on the
warped clock: figures measured this way err on the slow side, never the fast one. No jump
is taken while work runs in the loop's executor (``asyncio.to_thread``: a serial port's
writes): on a busy machine a thread may take longer than ``grace_s``, and a jump then
could skip to the next far timer (a benchmark's time limit) with the work still going.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from concurrent.futures import Executor

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

__all__ = ["WarpLoop", "run_warped"]

_GRACE_S = 0.003


class _WarpSelector(selectors.DefaultSelector):
    """A selector that reports a jump instead of sleeping through an idle timeout."""

    def __init__(self, grace_s: float) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.skipped_s = 0.0  # the loop's clock offset
        self.busy = 0  # executor jobs running: no jumps meanwhile

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.busy or (timeout is not None and timeout <= self.grace_s):
            return super().select(timeout)
        ready = super().select(self.grace_s)
        if ready or timeout is None:
            return ready or super().select(None)
        self.skipped_s += timeout - self.grace_s
        return []


class WarpLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a clock that skips idle time (see the module docstring)."""

    def __init__(self, grace_s: float = _GRACE_S) -> None:
        self._warp = _WarpSelector(grace_s)
        super().__init__(self._warp)

    def time(self) -> float:
        """Real monotonic time plus every idle wait skipped so far."""
        return super().time() + self._warp.skipped_s

    def run_in_executor(
        self,
        executor: Executor | None,
        func: Callable[[*_Ts], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]:
        """As the base loop's, with the job counted so no jump is taken while it runs."""
        future = super().run_in_executor(executor, func, *args)
        self._warp.busy += 1

        def done(_: asyncio.Future[_T]) -> None:
            self._warp.busy -= 1

        future.add_done_callback(done)
        return future

    @property
    def skipped_s(self) -> float:
        """Idle time skipped so far."""
        return self._warp.skipped_s


def run_warped(main: Coroutine[Any, Any, Any], grace_s: float = _GRACE_S) -> Any:
    """Run ``main`` to completion on a fresh WarpLoop."""
    loop = WarpLoop(grace_s)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

"""Slow work that a streaming command hands to whoever runs it, so a daemon stays responsive.

A stream (``ops.STREAMS``) is a generator that touches the node between the items it
yields, always on the thread that runs it: the daemon's event loop, or the CLI. File work
that touches no node (reading, checking, decoding and writing a USB drive's files) can
take seconds on a slow drive, so the stream yields it as a ``Job`` instead of doing it:
the daemon runs the job in a worker thread and resumes the stream when it is done; the CLI
runs it in place (``run_inline``). The stream then reads ``job.result()``, which returns
the value or raises what the work raised. A job must not touch the node.

A stream may also ``start()`` a job early, to read ahead while it works on the node; the
work then runs in a thread of its own, and yielding the job later waits for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["Job", "run_inline"]

T = TypeVar("T")


class Job(Generic[T]):
    """One call to run elsewhere, and its outcome."""

    __slots__ = ("_done", "_error", "_fn", "_thread", "_value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin the work now in a thread of its own; ``run`` then waits for it."""
        self._thread = threading.Thread(target=self._work, name="meshnode-job", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Do the work (or wait for it, once started), keeping its value or exception."""
        if self._thread is None:
            self._work()
        else:
            self._thread.join()

    def _work(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed back to the stream, which decides
            self._error = exc
        self._done = True

    def result(self) -> T:
        """The work's value; raises what it raised."""
        if not self._done:
            raise RuntimeError("the job has not run")
        if self._error is not None:
            raise self._error
        return cast("T", self._value)


def run_inline(items: Iterable[dict[str, object] | Job[Any]]) -> Iterator[dict[str, object]]:
    """Run a stream here: jobs in place, other items passed on."""
    for item in items:
        if isinstance(item, Job):
            item.run()
        else:
            yield item

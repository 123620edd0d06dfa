"""The shell's voice for the core's events: one log line each, at the level it deserves.

And the daemon's guard against floods of lines: strangers cause many of them (refused
connections, failed handshakes, radio neighbours), so ``RateLimitedHandler`` lets each
kind of line (logger, level and message template) through at most _LOG_BURST at once, then
one per _LOG_REFILL_S, and says how many it held back: "N similar lines suppressed".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from meshnode.core.events import (
    ContactSkipped,
    EntryNotServed,
    EntryReceived,
    EventsDropped,
    FeedForked,
    FollowsChanged,
    MailboxReleased,
    MessageDropped,
    NeighbourHeard,
    PeerMemoryForgotten,
    PeerMemoryNotKept,
    PeerMisbehaved,
    StoreOverCap,
)
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from meshnode.core.events import Event

__all__ = ["RateLimitedHandler", "log_event", "log_events"]

log = logging.getLogger("meshnode.events")

_LOG_BURST = 20  # lines of one kind at once: a start-up, or many peers coming back together
_LOG_REFILL_S = 6.0  # then one line of that kind per 6 s (10 a minute), whatever the flood
# A kind's held-back count is told with its next line, or after this long with any line.
_LOG_SUMMARY_S = 60.0
# Kinds tracked at once: the code has a few hundred log calls; past it the oldest is
# forgotten (a message built by the caller, not a template, would make new kinds).
_LOG_MAX_KINDS = 1024


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when tokens was last brought up to date
    suppressed: int = 0
    since: float = 0.0  # when the first line now held back came
    last: logging.LogRecord | None = None  # the latest line held back


class RateLimitedHandler(logging.Handler):
    """Hands records to ``inner``, each kind of line rate-limited (see the module docstring)."""

    def __init__(
        self,
        inner: logging.Handler,
        *,
        clock: Callable[[], float] = time.monotonic,
        burst: int = _LOG_BURST,
        refill_s: float = _LOG_REFILL_S,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.clock = clock
        self.burst = burst
        self.refill_s = refill_s
        self.suppressed = 0  # lines held back since start
        self._buckets: dict[tuple[str, int, str], _Bucket] = {}
        self._pending: dict[tuple[str, int, str], _Bucket] = {}  # kinds with lines held back

    def emit(self, record: logging.LogRecord) -> None:
        """Pass ``record`` on if its kind has room, else count it."""
        now = self.clock()
        key = (record.name, record.levelno, str(record.msg))
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= _LOG_MAX_KINDS:
                oldest = next(iter(self._buckets))
                self._summarise(oldest, self._buckets.pop(oldest))
            bucket = _Bucket(tokens=float(self.burst), at=now)
        self._buckets[key] = bucket  # the most recent kind last
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill_s)
        bucket.at = now
        if bucket.tokens < 1:
            if not bucket.suppressed:
                bucket.since = now
                self._pending[key] = bucket
            bucket.suppressed += 1
            bucket.last = record
            self.suppressed += 1
            return
        bucket.tokens -= 1
        self._summarise(key, bucket)
        for other in [k for k, b in self._pending.items() if now - b.since >= _LOG_SUMMARY_S]:
            self._summarise(other, self._pending[other])
        self.inner.handle(record)

    def _summarise(self, key: tuple[str, int, str], bucket: _Bucket) -> None:
        """Tell how many lines of this kind were held back, if any, and the latest of them."""
        self._pending.pop(key, None)
        if not bucket.suppressed or bucket.last is None:
            return
        last = bucket.last
        try:
            text = last.getMessage()
        except (TypeError, ValueError):  # its arguments do not fit its template
            text = str(last.msg)
        summary = logging.LogRecord(
            last.name,
            last.levelno,
            last.pathname,
            last.lineno,
            "%d similar lines suppressed, the last: %s",
            (bucket.suppressed, text),
            None,
        )
        bucket.suppressed, bucket.last = 0, None
        self.inner.handle(summary)

    def flush(self) -> None:
        """Tell every count still held back, then flush ``inner``."""
        self.acquire()
        try:
            for key, bucket in list(self._pending.items()):
                self._summarise(key, bucket)
        finally:
            self.release()
        self.inner.flush()

    def close(self) -> None:
        """Tell what is held back and close."""
        self.flush()
        super().close()


def log_event(event: Event) -> None:
    """Log one core event (EntryReceived is counted by the daemon, not logged)."""
    match event:
        case PeerMisbehaved(peer=peer, reason=reason):
            log.warning("peer %s misbehaved: %s", format_feed_id(FeedId(peer)), reason)
        case PeerMemoryForgotten(peer=peer, reason=reason):
            log.warning(
                "forgetting damaged memory of peer %s: %s", format_feed_id(FeedId(peer)), reason
            )
        case PeerMemoryNotKept(peer=peer, reason=reason):
            log.info("not keeping memory of peer %s: %s", format_feed_id(FeedId(peer)), reason)
        case FeedForked(feed=feed, seq=seq):
            log.warning("feed %s forked at seq %d", format_feed_id(feed), seq)
        case ContactSkipped(feed=feed, seq=seq, reason=reason):
            log.error("skipping damaged contact entry %s:%d: %s", format_feed_id(feed), seq, reason)
        case FollowsChanged(feed=feed, seq=seq):
            log.debug("follow graph changed by %s:%d", format_feed_id(feed), seq)
        case StoreOverCap(excess_bytes=excess):
            log.warning("store is %d bytes over its global cap, with nothing left to evict", excess)
        case MailboxReleased(feed=feed, seq=seq, limit=limit):
            if limit == "keep_days":
                log.debug(
                    "mailbox: kept %s's private entries up to seq %d", format_feed_id(feed), seq
                )
            else:
                log.info(
                    "mailbox limit %s reached: released %s's private entries up to seq %d",
                    limit,
                    format_feed_id(feed),
                    seq,
                )
        case MessageDropped(reason=reason):
            log.debug("dropping a malformed channel message: %s", reason)
        case NeighbourHeard(short_id=short_id):
            log.info("radio neighbour %s heard", short_id.hex())
        case EntryNotServed(reason=reason):
            log.warning("cannot serve a damaged entry: %s", reason)
        case EventsDropped(count=count):
            log.warning("%d events were dropped before the shell read them", count)
        case EntryReceived():
            pass
        case _:
            assert_never(event)


def log_events(events: Iterable[Event]) -> None:
    """Log each event in order."""
    for event in events:
        log_event(event)

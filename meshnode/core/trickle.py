"""Trickle timers (RFC 6206) for the shared channel: one firing per interval, the interval
doubling while all is calm and reset to its minimum when something new is heard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshnode.types import Rng

__all__ = ["Trickle"]


@dataclass(slots=True)
class Trickle:
    """RFC 6206 timer: one firing per interval, the interval doubling while all is calm."""

    min_s: float
    max_s: float
    interval_s: float = 0.0
    start: float = 0.0
    fire_at: float | None = None
    heard: int = 0

    def begin(self, now: float, rng: Rng, interval_s: float) -> None:
        """Start an interval of ``interval_s`` at ``now``, firing in its second half."""
        self.interval_s = interval_s
        self.start = now
        self.heard = 0
        self.fire_at = now + rng.uniform(interval_s / 2, interval_s)

    def reset(self, now: float, rng: Rng) -> None:
        """Something new: back to the shortest interval (unless already there and armed)."""
        if self.interval_s != self.min_s or self.fire_at is None:
            self.begin(now, rng, self.min_s)

    def defer(self, now: float, at: float) -> None:
        """Fire no sooner than ``at`` (a neighbour said an answer cannot come before)."""
        if self.fire_at is not None and self.fire_at >= at:
            return
        self.start, self.heard, self.fire_at = now, 0, at
        self.interval_s = min(self.max_s, max(self.interval_s, at - now))

    def limit(self, now: float, max_interval_s: float, rng: Rng) -> None:
        """Keep the current interval at most ``max_interval_s`` (it fires again sooner)."""
        if self.interval_s > max_interval_s:
            self.begin(now, rng, max_interval_s)

    def next_interval(self, now: float, rng: Rng) -> None:
        """After a firing: the next interval, twice as long up to ``max_s``."""
        # From now when the firing was held up (airtime budget): a timer held for an hour
        # must not catch up with a burst of the firings it missed.
        start = max(self.start + self.interval_s, now)
        self.begin(start, rng, min(self.max_s, 2 * self.interval_s))

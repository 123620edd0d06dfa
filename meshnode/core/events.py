"""What the core tells its shell: events are drained with ``events()`` and the shell logs them.

The core never logs: it appends an event, and the shell decides how loud to be.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshnode.types import FeedId, PeerId

__all__ = [
    "MAX_PENDING_EVENTS",
    "ContactSkipped",
    "EntryNotServed",
    "EntryReceived",
    "Event",
    "EventQueue",
    "EventsDropped",
    "FeedForked",
    "FollowsChanged",
    "MailboxReleased",
    "MessageDropped",
    "NeighbourHeard",
    "PeerMemoryForgotten",
    "PeerMemoryNotKept",
    "PeerMisbehaved",
    "StoreOverCap",
]

MAX_PENDING_EVENTS = 4096  # a shell that never drains loses the oldest, never its memory


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMisbehaved:
    """A peer broke the rules and was disconnected."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryReceived:
    """A peer gave us an entry we stored."""

    peer: PeerId
    feed: FeedId
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMemoryForgotten:
    """Our stored memory of a peer did not decode: the session starts as a first meeting."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMemoryNotKept:
    """Our memory of a peer is not kept (too large, or over a budget): it is forgotten."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedForked:
    """Two valid entries claim one seq of a feed: both kept as proof, the feed stops there."""

    feed: FeedId
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactSkipped:
    """A stored contact entry could not be read back, so its follow or block is not applied."""

    feed: FeedId
    seq: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowsChanged:
    """A contact entry changed the follow graph, so what the node keeps changed."""

    feed: FeedId
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOverCap:
    """The store is over its global cap with nothing left that may be evicted."""

    excess_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxReleased:
    """The mailbox stopped keeping ``feed``'s private entries up to ``seq``: kept
    ``keep_days``, or a named limit (``max_bytes``, ``author_share``) was reached."""

    feed: FeedId
    seq: int
    limit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped:
    """A shared-channel message that did not decode was dropped."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighbourHeard:
    """A radio neighbour of our network was heard for the first time."""

    short_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryNotServed:
    """A stored entry asked for could not be read back, so it was not sent."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped:
    """Events were dropped because nobody drained them (MAX_PENDING_EVENTS)."""

    count: int


Event = (
    PeerMisbehaved
    | EntryReceived
    | PeerMemoryForgotten
    | PeerMemoryNotKept
    | FeedForked
    | ContactSkipped
    | FollowsChanged
    | StoreOverCap
    | MailboxReleased
    | MessageDropped
    | NeighbourHeard
    | EntryNotServed
    | EventsDropped
)


class EventQueue:
    """Events waiting for the shell, at most ``limit``; the oldest go first when it is full."""

    __slots__ = ("_dropped", "_events", "limit")

    def __init__(self, limit: int = MAX_PENDING_EVENTS) -> None:
        self.limit = limit
        self._events: deque[Event] = deque()
        self._dropped = 0

    def push(self, event: Event) -> None:
        """Queue one event."""
        if len(self._events) >= self.limit:
            self._events.popleft()
            self._dropped += 1
        self._events.append(event)

    def drain(self) -> list[Event]:
        """Every queued event, oldest first, then EventsDropped if any were lost."""
        out = list(self._events)
        self._events.clear()
        if self._dropped:
            out.append(EventsDropped(count=self._dropped))
            self._dropped = 0
        return out

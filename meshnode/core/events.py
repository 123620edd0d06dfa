"""What the core tells its shell: events are drained with ``events()`` and the shell logs them.

The core never logs: it appends an event, and the shell decides how loud to be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshnode.types import FeedId, PeerId

__all__ = ["EntryReceived", "Event", "PeerMemoryForgotten", "PeerMisbehaved"]


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


Event = PeerMisbehaved | EntryReceived | PeerMemoryForgotten

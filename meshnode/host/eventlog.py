"""The shell's voice for the core's events: one log line each, at the level it deserves."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, assert_never

from meshnode.core.events import (
    ContactSkipped,
    EntryNotServed,
    EntryReceived,
    EventsDropped,
    FeedForked,
    FollowsChanged,
    MessageDropped,
    NeighbourHeard,
    PeerMemoryForgotten,
    PeerMisbehaved,
    StoreOverCap,
)
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId

if TYPE_CHECKING:
    from collections.abc import Iterable

    from meshnode.core.events import Event

__all__ = ["log_event", "log_events"]

log = logging.getLogger("meshnode.events")


def log_event(event: Event) -> None:
    """Log one core event (EntryReceived is counted by the daemon, not logged)."""
    match event:
        case PeerMisbehaved(peer=peer, reason=reason):
            log.warning("peer %s misbehaved: %s", format_feed_id(FeedId(peer)), reason)
        case PeerMemoryForgotten(peer=peer, reason=reason):
            log.warning(
                "forgetting damaged memory of peer %s: %s", format_feed_id(FeedId(peer)), reason
            )
        case FeedForked(feed=feed, seq=seq):
            log.warning("feed %s forked at seq %d", format_feed_id(feed), seq)
        case ContactSkipped(feed=feed, seq=seq, reason=reason):
            log.error("skipping damaged contact entry %s:%d: %s", format_feed_id(feed), seq, reason)
        case FollowsChanged(feed=feed, seq=seq):
            log.debug("follow graph changed by %s:%d", format_feed_id(feed), seq)
        case StoreOverCap(excess_bytes=excess):
            log.warning("store is %d bytes over its global cap, with nothing left to evict", excess)
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

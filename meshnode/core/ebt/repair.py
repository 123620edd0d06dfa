"""Repair on lossy links: resend requests, periodic resyncs, and forgiven stale frames.

A gap in a feed (an entry lost on the way) asks the pusher to send again from just after
what we hold, once per gap and retry interval. Every ``resync_s`` (backing off while
nothing changes) a lossy session restates the notes the peer may have missed. A short
entry that fails its check may be a frame of an earlier session, or rebuilt under a
wrong tag match: it is forgiven (and the key asked for) a few times before the peer is
blamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.core.clocks import Note
from meshnode.core.ebt.notes import send_notes, told
from meshnode.core.ebt.push import schedule_push
from meshnode.core.ebt.session import Phase

if TYPE_CHECKING:
    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.core.feed import IngestResult
    from meshnode.types import FeedId

__all__ = ["Repair"]

_EARLY_RESYNCS = 3
_MAX_RESYNC_BACKOFF = 16
_HARMLESS = ("gap", "before", "feed forked")  # rejections that are not the sender's fault


@dataclass(frozen=True, slots=True, kw_only=True)
class Repair:
    """Asks again for what was lost, and restates what the peer may have missed."""

    host: Host
    config: ReplicationConfig
    names: FeedNames
    notes: Notes

    def ask_resend(self, s: Session, feed: FeedId, now: float) -> None:
        """Explicitly ask ``s`` to push ``feed`` from just after what we hold."""
        s.flow.assumed.pop(feed, None)
        latest = self.host.store.latest_seq(feed)
        asked = s.repair.asked.get(feed)
        if asked is not None and asked[0] == latest and now < asked[1]:
            return  # one request per gap: later entries of the same burst show the same gap
        s.repair.asked[feed] = (latest, now + self.config.hello_retry_s)
        note = Note(latest, False, 0, latest + 1)
        s.memory.sent[feed] = told(note)
        send_notes(s, [self.notes.encode(s, feed, note)])

    def forgive(self, s: Session, result: IngestResult, *, ref: int | None, now: float) -> bool:
        """Handle a rejected entry; False when the peer is to blame for it."""
        entry = result.entry
        if entry is not None and result.reason.startswith(_HARMLESS):
            if result.reason.startswith("gap"):
                self.ask_resend(s, entry.author, now)
            return True
        # On a lossy link a frame of an earlier session may still arrive: never fatal there.
        if ref is not None and (not s.reliable or s.repair.strikes < self.config.max_strikes):
            # A short form rebuilt under a mistaken tag match fails its signature: ask
            # for the key instead of blaming the peer, a few times at most.
            s.repair.strikes += 1
            self.names.unname(s, ref)
            return True
        return False

    def resync(self, s: Session, now: float) -> None:
        """Lossy links: restate what the peer may have missed."""
        if s.phase is not Phase.CONFIRMED:
            s.repair.resync_at = now + self.config.resync_s
            return
        s.repair.resyncs += 1
        early = s.repair.resyncs <= _EARLY_RESYNCS  # the opening clocks may have been lost
        restated = 0
        for feed in self.host.replicated():
            remote = s.memory.remote.get(feed)
            latest = self.host.store.latest_seq(feed)
            unheard = feed not in s.clock.heard and early
            if remote is None or remote.latest != latest or unheard:
                s.memory.sent.pop(feed, None)  # say it again: the last note may be lost
                s.clock.notes[feed] = True
                restated += 1
            if remote is not None and not remote.lazy and remote.latest < latest:
                schedule_push(s, feed, remote.latest + 1, force=True)
        # Quiet links back off (as Trickle does), so an idle radio stays idle.
        backoff = 1 if restated else min(s.repair.resync_backoff * 2, _MAX_RESYNC_BACKOFF)
        s.repair.resync_backoff = backoff
        s.repair.resync_at = now + self.config.resync_s * backoff

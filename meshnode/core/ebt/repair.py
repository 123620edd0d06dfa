"""Repair on lossy links: early entries kept, single resends, acks, and periodic resyncs.

* An entry that comes before the one it follows (that one was lost) is kept, at most
  ``MAX_EARLY_ENTRIES`` per session, until the gap is filled; the receiver asks for the
  first missing seq (its note's ``start``), again every two settled round trips while the
  gap is open, and its notes keep asking while anything is kept. A feed kept whole is
  never started past seq 1.
* A sender reads a lossy peer's notes as acks against what it pushed: a gap named is sent
  again alone; a note behind what was pushed more than a settled round trip ago (so the
  peer holds nothing after it) pushes again from there; pushes still on their way wait.
  A push without an ack for a note delay and two round trips restates our note, which a
  peer lacking entries answers.
* Every ``resync_s`` (backing off while nothing changes) a lossy session restates the
  notes the peer may have missed; a peer that lacks entries answers, and its answer says
  what to push (never a guess from a clock that may be stale).
* A short entry that fails its check may be a frame of an earlier session, or rebuilt
  under a wrong tag match: it is forgiven (and the key asked for) a few times before the
  peer is blamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.message import entry_author, entry_seq
from meshnode.core.clocks import Note
from meshnode.core.ebt.notes import send_notes, told
from meshnode.core.ebt.session import UNDATED, Phase
from meshnode.core.feed import restarts_at

if TYPE_CHECKING:
    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.core.feed import IngestResult
    from meshnode.types import FeedId, PeerId

__all__ = ["MAX_EARLY_ENTRIES", "Repair"]

# Entries kept per session until the one before them arrives: a lost frame then costs one
# resend, not the run after it. 32 short entries are a few KB.
MAX_EARLY_ENTRIES = 32
_MAX_EARLY_AHEAD = 64  # seqs past what we hold that are worth keeping

_FREE_ASKS = 3  # requests for one gap before they back off (a resend lost thrice: 3%)
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
    sessions: dict[PeerId, Session]  # the replicator's live sessions (shared, not copied)

    # -- receiving: entries that came early -------------------------------------------------

    def hold_early(self, s: Session, feed: FeedId, seq: int, frame: bytes, now: float) -> None:
        """Keep an entry that cannot be chained yet, and ask for the first one missing."""
        latest = self.host.store.latest_seq(feed)
        if seq <= latest:
            return  # held already, or evicted: nothing to ask for
        kept = s.repair.early.setdefault(feed, {})
        room = s.repair.early_count < MAX_EARLY_ENTRIES and seq - latest <= _MAX_EARLY_AHEAD
        if seq not in kept and room:
            kept[seq] = frame
            s.repair.early_count += 1
        if not kept:
            del s.repair.early[feed]
        self.ask_resend(s, feed, now)

    def early_full_form(self, s: Session, body: bytes, frame: bytes, now: float) -> bool:
        """Keep a full-form entry that cannot be chained yet; True when it was kept."""
        author = entry_author(body)
        scope = self.host.scope(author)
        if scope is None:
            return False
        head = self.host.store.head(author)
        seq = entry_seq(body)
        if head is None and (scope.max_entries is not None or seq <= 1):
            return False  # a capped feed may start anywhere; a whole one only at 1
        if head is not None and (
            seq <= head.latest + 1 or restarts_at(seq, head.latest, scope.max_entries)
        ):
            return False  # the next entry, or a capped feed's tail past a gap: a restart
        self.hold_early(s, author, seq, frame, now)
        return True

    def next_early(self, feed: FeedId) -> tuple[Session, bytes] | None:
        """An entry kept early that now follows what we hold, with its session."""
        latest = self.host.store.latest_seq(feed)
        found = None
        for s in self.sessions.values():
            kept = s.repair.early.get(feed)
            if not kept:
                continue
            for seq in [q for q in kept if q <= latest]:
                del kept[seq]  # arrived by another way
                s.repair.early_count -= 1
            if found is None and latest + 1 in kept:
                found = (s, kept.pop(latest + 1))
                s.repair.early_count -= 1
            if not kept:
                del s.repair.early[feed]
        return found

    def ask_resend(self, s: Session, feed: FeedId, now: float) -> None:
        """Explicitly ask ``s`` to push ``feed`` from just after what we hold (once per gap
        and retry interval)."""
        s.flow.assumed.pop(feed, None)
        latest = self.host.store.latest_seq(feed)
        asked = s.repair.asked.get(feed)
        if asked is not None and asked[0] == latest and now < asked[1]:
            return  # one request per gap: later entries of the same burst show the same gap
        # Asked again after a round trip or two while entries are kept early (ask_again);
        # a gap still open after a few requests is asked for less and less often.
        tries = asked[2] + 1 if asked is not None and asked[0] == latest else 1
        backoff = 2 ** max(0, tries - _FREE_ASKS)
        interval = min(2 * s.rtt.settle_s(self.config.note_delay_s) * backoff, self.config.resync_s)
        s.repair.asked[feed] = (latest, now + interval, tries)
        start = self.notes.resume_at(s, feed, latest)
        s.rtt.start(feed, start, now)
        note = Note(latest, False, 0, start)
        s.memory.sent[feed] = told(note)
        send_notes(s, [self.notes.encode(s, feed, note)])

    @staticmethod
    def asks_due(s: Session) -> float | None:
        """When the first request for a gap behind entries kept early is to be repeated."""
        times = [s.repair.asked[f][1] for f in s.repair.early if f in s.repair.asked]
        return min(times) if times else None

    def ask_again(self, s: Session, now: float) -> None:
        """Repeat the requests for gaps still open (the request, or the answer, was lost)."""
        for feed in list(s.repair.early):
            self.ask_resend(s, feed, now)

    # -- sending: acks on lossy links ---------------------------------------------------

    def on_ack(self, s: Session, feed: FeedId, note: Note, now: float) -> bool:
        """A lossy peer's eager note about a feed we push it, read as an ack; True when
        it is handled here (the pusher keeps its place), False for the usual reading."""
        sent = s.flow.sent.get(feed)
        if s.reliable or sent is None or note.lazy or not note.replicating:
            return False
        highest, pushed_at = sent
        if note.latest >= highest:
            s.repair.unacked.pop(feed, None)
            return False
        if note.start == note.latest + 1:  # a gap: it holds entries after this one
            self._resend_one(s, feed, note.start, now)
            return True
        if note.start >= 0:
            return False  # another request (a tail): as asked
        # It holds nothing past its latest: what was pushed a round trip before its note
        # was lost, and goes again from there; pushes since may still be on their way.
        return now - pushed_at <= s.rtt.settle_s(self.config.note_delay_s)

    def _resend_one(self, s: Session, feed: FeedId, seq: int, now: float) -> None:
        last = s.repair.resent.get(feed)
        if (
            last is not None
            and last[0] == seq
            and now - last[1] <= s.rtt.settle_s(self.config.note_delay_s)
        ):
            return  # sent again just now: on its way
        s.repair.resent[feed] = (seq, now)
        s.flow.resend[feed] = seq

    def date_pushes(self, now: float) -> None:
        """Pushes made while the time was not known happened no later than ``now``."""
        for s in self.sessions.values():
            for feed, (highest, sent_at) in s.flow.sent.items():
                if sent_at == UNDATED:
                    s.flow.sent[feed] = (highest, now)
                    s.repair.unacked[feed] = now + s.rtt.ack_wait_s(self.config.note_delay_s)

    def ack_due(self, s: Session, now: float) -> None:
        """Pushes without an ack for too long: restate our note, which a peer that
        lacks them answers."""
        for feed in [f for f, due in s.repair.unacked.items() if due <= now]:
            del s.repair.unacked[feed]
            s.memory.sent.pop(feed, None)
            self.notes.queue(s, feed, urgent=True, now=now)

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
                # Say it again: the last note may be lost. A peer that lacks entries
                # answers, and its note says what to push (never what it has).
                s.memory.sent.pop(feed, None)
                s.clock.notes[feed] = True
                restated += 1
        # Quiet links back off (as Trickle does), so an idle radio stays idle.
        backoff = 1 if restated else min(s.repair.resync_backoff * 2, _MAX_RESYNC_BACKOFF)
        s.repair.resync_backoff = backoff
        s.repair.resync_at = now + self.config.resync_s * backoff

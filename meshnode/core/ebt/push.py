"""Pushes and flow control: which entries go to a peer next, and how many at once.

A peer that is eager for a feed gets its entries pushed, in seq order per feed and
round-robin across feeds, while its link has fewer than ``window_bytes`` of entries in
flight (the shell reports delivery with ``delivered``). An entry the peer can rebuild
goes in short form (no author, seq or previous hash): when it follows what we think the
peer holds of its feed. A partial peer far behind is pushed only a tail as long as the
range it holds (``push_from``), which a capped node takes as a restart of the feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.frame import encode_entry_frame
from meshnode.codec.message import short_form
from meshnode.core.ebt.session import UNDATED
from meshnode.core.feed import restarts_at
from meshnode.types import Seq

if TYPE_CHECKING:
    from collections.abc import Iterable

    from meshnode.core.clocks import Note
    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.types import FeedId, PeerId

__all__ = ["Pusher", "push_from", "schedule_push"]


def schedule_push(s: Session, feed: FeedId, seq: int, *, force: bool = False) -> None:
    """Push ``feed`` to ``s`` from ``seq`` (or from earlier, if already due from there)."""
    current = s.flow.push.get(feed)
    if current is None or force or seq < current:
        s.flow.push[feed] = seq


def push_from(remote: Note, ours: int, assumed: int) -> int:
    """Where to push a feed we hold up to ``ours`` from, to an eager peer that holds up to
    ``assumed``: just after it, or, past a gap longer than a partial peer holds, only a
    tail that long, which it takes as a restart when that is its cap (feed.restarts_at)."""
    # A partial peer said where its range starts, or asked for a tail when it held none.
    first = remote.first or (remote.start if remote.start > remote.latest + 1 else 0)
    if first > 1:
        held = assumed - first + 1
        tail = ours - held + 1
        if restarts_at(tail, assumed, held):
            return tail
    return assumed + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Pusher:
    """Drains every session's frames: control frames first, then entries in the window."""

    host: Host
    config: ReplicationConfig
    names: FeedNames
    notes: Notes

    def frames_to_send(
        self, sessions: Iterable[Session], now: float | None
    ) -> list[tuple[PeerId, bytes]]:
        """Drain frames: control first, then resends, then pushes round-robin across feeds
        (``now`` None: the time is not known, and lossy pushes are dated later)."""
        out: list[tuple[PeerId, bytes]] = []
        for s in sessions:
            if any(s.clock.notes.values()):
                self.notes.flush(s, urgent_only=True)
            out.extend((s.peer, f) for f in s.control)
            s.control.clear()
            if s.flow.resend:
                self._resend(s, out, now)
            self._drain(s, out, now)
        return out

    @staticmethod
    def delivered(s: Session, nbytes: int) -> None:
        """The shell has delivered ``nbytes`` of entry frames to the peer's link."""
        s.flow.in_flight = max(0, s.flow.in_flight - nbytes)

    def entry_stored(
        self, sessions: Iterable[Session], feed: FeedId, seq: int, source: PeerId | None, now: float
    ) -> None:
        """Pass a stored entry on: pushed to eager peers that lack it, noted to lazy ones."""
        for s in sessions:
            if s.peer == source:
                continue
            remote = s.memory.remote.get(feed)
            if remote is None or not remote.replicating:
                continue
            known = s.flow.assumed.get(feed, remote.latest)
            if known >= seq:
                continue
            if not remote.lazy and seq >= remote.push_from:
                schedule_push(s, feed, known + 1)
            else:
                self.notes.queue(s, feed, urgent=False, now=now)

    def _resend(self, s: Session, out: list[tuple[PeerId, bytes]], now: float | None) -> None:
        """Single entries a lossy peer named as missing (``Repair.on_ack``)."""
        sent_at = UNDATED if now is None else now
        for feed, seq in list(s.flow.resend.items()):
            del s.flow.resend[feed]
            head = self.host.store.head(feed)
            remote = s.memory.remote.get(feed)
            if head is None or remote is None or not head.first <= seq <= head.latest:
                continue
            frame = self._entry_frame(s, feed, seq, short=remote.latest == seq - 1)
            self._count(s, frame)
            out.append((s.peer, frame))
            highest = s.flow.sent[feed][0] if feed in s.flow.sent else seq
            s.flow.sent[feed] = (highest, sent_at)  # what follows it may be on its way too
            s.repair.unacked[feed] = sent_at + s.rtt.ack_wait_s(self.config.note_delay_s)

    @staticmethod
    def _count(s: Session, frame: bytes) -> None:
        s.flow.in_flight += len(frame)
        s.traffic.entry_bytes += len(frame)
        s.traffic.entries += 1

    def _drain(self, s: Session, out: list[tuple[PeerId, bytes]], now: float | None) -> None:
        store = self.host.store
        flow, memory = s.flow, s.memory
        push = flow.push
        window_bytes = self.config.window_bytes
        sent_at = UNDATED if now is None else now
        ack_due = sent_at + s.rtt.ack_wait_s(self.config.note_delay_s)
        while push and flow.in_flight < window_bytes:
            feed, seq = next(iter(push.items()))
            del push[feed]
            head = store.head(feed)
            remote = memory.remote.get(feed)
            if head is None or remote is None or not remote.replicating:
                continue
            seq = max(seq, remote.push_from if remote.start >= 0 else seq)
            if seq < head.first:
                if remote.latest > 0 or remote.start <= 1:
                    # We are capped and lack its next entry, or it did not ask for a tail
                    # (it keeps the whole feed, and could never fill in what comes before
                    # our first): it asks someone else.
                    continue
                seq = head.first
            if seq > head.latest:
                continue
            assumed = flow.assumed.get(feed, remote.latest)
            frame = self._entry_frame(s, feed, seq, short=assumed == seq - 1)
            self._count(s, frame)
            out.append((s.peer, frame))
            if not s.reliable:  # for reading its acks (Repair.on_ack)
                highest = flow.sent[feed][0] if feed in flow.sent else 0
                flow.sent[feed] = (max(highest, seq), sent_at)
                s.repair.unacked[feed] = ack_due
            flow.assumed[feed] = max(flow.assumed.get(feed, 0), seq)
            memory.pushed[feed] = max(memory.pushed.get(feed, 0), seq)
            flow.pushed_now[feed] = seq
            memory.pushed_count += 1
            if seq < head.latest:
                push[feed] = seq + 1  # re-queued at the back: round-robin across feeds

    def _entry_frame(self, s: Session, feed: FeedId, seq: int, *, short: bool) -> bytes:
        """The entry as an ENTRY frame: short when the peer holds the one before it."""
        raw = self.host.store.get(feed, Seq(seq))
        if short and seq > 1:  # stored entries were decoded when they came: no need again
            return encode_entry_frame(self.names.ref(s, feed), seq, short_form(raw, seq))
        return encode_entry_frame(None, 0, raw)

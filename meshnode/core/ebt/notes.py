"""Our notes to a peer: what we say about each feed, queued, batched and framed.

A note says how much of a feed we hold and whether the peer should push it to us (eager)
or just tell us what it has (lazy). Notes wait ``note_delay_s`` (jittered) to be batched;
urgent ones go out with the next frames. A note the peer already knows is not sent again
(request skipping): ``memory.sent`` records what we last told it (see ``told``). For a
capped feed the note asks for the tail we keep, from nothing held or past a gap the cap
exceeds (``tail_start``): the node takes that entry as a restart (feed.restarts_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.frame import FrameType
from meshnode.codec.varint import encode_varint
from meshnode.core.clocks import NOT_REPLICATING, Note, encode_note
from meshnode.core.ebt.session import Phase
from meshnode.core.feed import restarts_at

if TYPE_CHECKING:
    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.core.policy import Scope
    from meshnode.types import FeedId, Rng

__all__ = ["Notes", "send_notes", "send_run", "told"]

_RUN_HEADER_BYTES = 12  # type byte, start index varint, and room to spare
_NOTES_HEADER_BYTES = 1  # type byte


def told(note: Note) -> int:
    """What ``memory.sent`` records of a note: latest << 1 | lazy, or -1."""
    return note.latest << 1 | int(note.lazy) if note.replicating else -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Notes:
    """Builds, queues and frames our notes for every session of a node."""

    host: Host
    config: ReplicationConfig
    rng: Rng
    names: FeedNames

    def my_note(self, s: Session, feed: FeedId, scope: Scope | None) -> Note:
        """Our state of ``feed`` as we would tell it to ``s`` now."""
        if scope is None:
            return NOT_REPLICATING
        head = self.host.store.head(feed)
        latest = head.latest if head else 0
        first = head.first if head and head.first > 1 else 0
        lazy = feed not in s.rx
        start = -1
        remote = s.memory.remote.get(feed)
        if scope.max_entries is not None:
            # A capped feed: ask for its tail only, once we know it (from nothing held, or
            # past a gap the cap exceeds, which the node takes as a restart).
            if head is None and (remote is None or feed not in s.clock.heard):
                lazy = True
            else:
                start = self.tail_start(s, feed, latest, scope.max_entries)
        if remote is None and lazy:
            start = latest + 1  # a query: "I do not know your state of this feed"
        elif not lazy and start < 0 and feed in s.repair.early:
            start = latest + 1  # a gap: later entries came, this one did not (Repair)
        return Note(latest, lazy, first, start)

    def resume_at(self, s: Session, feed: FeedId, latest: int) -> int:
        """The first seq to ask ``s`` for after ``latest``: a capped feed's tail past a gap
        it exceeds (the node takes it as a restart), else latest + 1."""
        scope = self.host.scope(feed)
        if scope is not None and scope.max_entries is not None and latest > 0:
            tail = self.tail_start(s, feed, latest, scope.max_entries)
            if tail >= 0:
                return tail
        return latest + 1

    @staticmethod
    def tail_start(s: Session, feed: FeedId, latest: int, cap: int) -> int:
        """Where to ask ``s`` to push a capped feed held up to ``latest`` from: the start of
        its newest ``cap`` entries as the peer said, when that skips what we hold; else -1."""
        remote = s.memory.remote.get(feed)
        if remote is None or feed not in s.clock.heard:
            return -1
        tail = remote.latest - cap + 1
        if latest == 0:
            return tail if tail > 1 else -1
        return tail if restarts_at(tail, latest, cap) else -1

    def queue(self, s: Session, feed: FeedId, *, urgent: bool, now: float) -> None:
        """Note ``feed`` to ``s``: with the next frames if urgent, else after a delay."""
        s.clock.notes[feed] = s.clock.notes.get(feed, False) or urgent
        if s.clock.notes_at is None:
            jitter = 0.5 + self.rng.random()
            s.clock.notes_at = now + self.config.note_delay_s * jitter

    def flush(self, s: Session, *, urgent_only: bool) -> None:
        """Frame the queued notes (only the urgent ones if ``urgent_only``)."""
        if s.phase is Phase.HELLO_SENT and not s.hello.delta:
            s.clock.notes_at = None  # nothing can be said before the peer's HELLO; it re-arms
            return
        parts = []
        for feed in [f for f, urgent in s.clock.notes.items() if urgent or not urgent_only]:
            del s.clock.notes[feed]
            note = self.my_note(s, feed, self.host.scope(feed))
            said = s.memory.sent.get(feed)
            if said == told(note) and note.start < 0:
                continue  # the peer already knows exactly this
            same_flag = said is not None and said >= 0 and (said & 1) == note.lazy
            # (On a lossy link the note doubles as an ack, so it goes out regardless.)
            has_it = s.reliable and s.flow.assumed.get(feed, -1) >= note.latest
            if same_flag and note.start < 0 and has_it:
                continue  # the peer has as much as we do: nothing worth saying
            s.memory.sent[feed] = told(note)
            parts.append(self.encode(s, feed, note))
        if not s.clock.notes:
            s.clock.notes_at = None
        send_notes(s, parts)

    def encode(self, s: Session, feed: FeedId, note: Note) -> bytes:
        """``note`` about ``feed`` as it goes in a NOTES frame (counted in the stats)."""
        encoded = encode_varint(self.names.ref(s, feed)) + encode_note(note)
        s.traffic.note_sizes.append(len(encoded))
        return encoded


def send_notes(s: Session, parts: list[bytes]) -> None:
    """Frame encoded notes into as few NOTES frames as the link's MTU allows."""
    budget = s.link.mtu_bytes - _NOTES_HEADER_BYTES
    chunk: list[bytes] = []
    size = 0
    for part in parts:
        if size + len(part) > budget and chunk:
            s.emit(bytes((FrameType.NOTES,)) + b"".join(chunk))
            chunk, size = [], 0
        chunk.append(part)
        size += len(part)
    if chunk:
        s.emit(bytes((FrameType.NOTES,)) + b"".join(chunk))


def send_run(s: Session, notes: list[bytes]) -> None:
    """Frame notes of consecutive indexes from 0 into RUN frames (counted in the stats)."""
    budget = s.link.mtu_bytes - _RUN_HEADER_BYTES
    start, size = 0, 0
    chunk: list[bytes] = []
    for i, note in enumerate(notes):
        if size + len(note) > budget and chunk:
            s.emit(bytes((FrameType.RUN,)) + encode_varint(start) + b"".join(chunk))
            start, size, chunk = i, 0, []
        chunk.append(note)
        size += len(note)
        s.traffic.note_sizes.append(len(note))
    if chunk:
        s.emit(bytes((FrameType.RUN,)) + encode_varint(start) + b"".join(chunk))

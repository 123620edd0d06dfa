"""Epidemic broadcast trees with compact notes and partial vector clocks (sans-IO).

One ``Replicator`` per node keeps a ``Session`` per connected peer and routes frames,
timers and local changes to the parts in ``meshnode/core/ebt/``. The rules, in one place,
with the part that keeps each:

* Opening (``opening``). Both sides send HELLO at once. If each remembers the other under
  the same epochs, the session is a *delta*: each side mentions only feeds whose state
  changed since it last told the peer (request skipping), and pushes what the stored
  remote clock says the peer lacks without waiting. Otherwise memory of the peer is
  dropped and the *leader* (smaller node id) sends its whole clock (DEFINE tags + RUN
  notes); the follower answers with notes only for the feeds where it differs. Either
  way sync takes at most two round trips plus transfer time. The session's phases are a
  transition table (``session``); feeds are named by per-peer indexes (``names``).
* Silence (here). On a reliable link, a follower that does not mention a feed the leader
  listed holds it at the leader's seq and wants new entries pushed (eager). On a lossy
  link an answer may be lost, so the follower answers for every feed, and the leader
  takes a follower it has not heard from as lazy (it is told of new entries, not sent
  them).
* Eager/lazy (``upstream``). Each wanted feed has one *upstream* peer that we asked to
  push (eager); other peers are lazy and get delayed, batched notes (``notes``). A
  duplicate pushed by a peer that is not our upstream makes that peer lazy. A note about
  an entry we lack makes its sender our upstream soon when the current upstream cannot
  serve it (a measured round trip for entries a newcomer held, two note delays for news),
  else after ``stall_timeout_s`` without progress (ask another peer).
* Pushes (``push``) go out in seq order per feed, round-robin across feeds, within a
  per-link window of in-flight bytes (the shell reports delivery with ``delivered``).
* Lossy links (``repair``) keep entries that came early, ask for just the missing ones,
  read notes as acks (nothing that arrived is sent again), restate their clocks now and
  then, and forgive a few stale entries.
* A peer that sends an invalid entry or a frame that does not decode, or that names more
  feeds we do not keep than ``max_unknown_feeds`` (``names``), is reported with
  ``PeerMisbehaved`` and dropped (here); nothing invalid is stored.
* Memory of a peer (``keeper``) is loaded on connect and saved on disconnect, within a
  size per peer, a count and a total of peers, and a write budget for strangers. Every
  table a peer can grow is keyed by feeds we keep or hold, or capped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.codec.frame import (
    MAX_INDEX,
    PROTOCOL_VERSION,
    FrameType,
    Hello,
    decode_entry_frame,
    decode_hello,
    make_ref,
)
from meshnode.codec.message import decode_entry, decode_short_entry
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.core.clocks import NOT_REPLICATING, Note, decode_note, encode_note
from meshnode.core.ebt.ahead import EntriesAhead, same_entry
from meshnode.core.ebt.keeper import MemoryKeeper
from meshnode.core.ebt.names import FeedNames
from meshnode.core.ebt.notes import Notes, send_notes, told
from meshnode.core.ebt.opening import Opening
from meshnode.core.ebt.push import Pusher, push_from, schedule_push
from meshnode.core.ebt.repair import Repair
from meshnode.core.ebt.session import (
    UNDATED,
    Host,
    LinkInfo,
    PeerOverLimit,
    Phase,
    ReplicationConfig,
    Session,
    Signal,
    TrafficStats,
)
from meshnode.core.ebt.upstream import UpstreamChoice
from meshnode.core.events import EntryReceived, Event, PeerMisbehaved
from meshnode.core.feed import Outcome
from meshnode.errors import DecodeError
from meshnode.types import FeedId, MsgId, PeerId, Rng, Seq

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.codec.message import Entry
    from meshnode.core.policy import Scope

__all__ = [
    "EntryReceived",
    "Event",
    "Host",
    "LinkInfo",
    "PeerMisbehaved",
    "ReplicationConfig",
    "Replicator",
    "TrafficStats",
]


class Replicator:
    """EBT replication state for all sessions of one node."""

    def __init__(self, host: Host, *, config: ReplicationConfig, rng: Rng, epoch: bytes) -> None:
        self.host = host
        self.config = config
        self.sessions: dict[PeerId, Session] = {}
        self.traffic = TrafficStats()
        self.now = 0.0
        self._dated = False  # self.now is the time of the input being handled
        self._undated = False  # some pushes were made while the time was not known
        self._events: list[Event] = []
        self.keeper = MemoryKeeper(host=host, config=config, events=self._events)
        self.names = names = FeedNames(
            host=host,
            epoch=epoch,
            retry_s=config.hello_retry_s,
            max_unknown=config.max_unknown_feeds,
        )
        self.notes = notes = Notes(host=host, config=config, rng=rng, names=names)
        self.pusher = Pusher(host=host, config=config, names=names, notes=notes)
        self.choice = choice = UpstreamChoice(
            host=host, config=config, sessions=self.sessions, notes=notes
        )
        self.repair = Repair(
            host=host, config=config, names=names, notes=notes, sessions=self.sessions
        )
        self.opening = Opening(
            host=host, config=config, epoch=epoch, names=names, notes=notes, choice=choice
        )
        self._handlers: dict[FrameType, Callable[[Session, bytes], None]] = {
            FrameType.DEFINE: names.on_define,
            FrameType.DEFINE_KEY: names.on_define_key,
            FrameType.NOTES: self._on_notes,
            FrameType.RUN: self._on_run,
            FrameType.ENTRY: self._on_entry,
            FrameType.WANT_KEY: names.on_want_key,
        }

    # -- session lifecycle ------------------------------------------------------------

    def connect(self, peer: PeerId, now: float, link: LinkInfo) -> None:
        """Open a session with ``peer`` and queue our opening frames."""
        self._tick(now)
        if peer in self.sessions:
            self.disconnect(peer, now)
        memory = self.keeper.load(peer)
        s = Session.begin(peer, link, memory, me=self.host.feed_id, traffic=self.traffic)
        self.sessions[peer] = s
        self.opening.open(s, now)

    def disconnect(self, peer: PeerId, now: float, *, keep: bool = True) -> None:
        """Close the session with ``peer``, keep its memory (unless not ``keep``), and
        re-route its feeds."""
        self._tick(now)
        s = self.sessions.pop(peer, None)
        if s is None:
            return
        s.advance(Signal.DISCONNECT)
        if keep:
            self.keeper.save(s, now, self.sessions)
        else:
            self.keeper.discard(s)
        self.choice.peer_gone(peer, now)

    def close(self) -> None:
        """Persist every session's memory."""
        for s in self.sessions.values():
            self.keeper.save(s, self.now, self.sessions)

    def _misbehaved(self, s: Session, reason: str) -> None:
        self._events.append(PeerMisbehaved(peer=s.peer, reason=reason))
        self.disconnect(s.peer, self.now, keep=False)  # what a rule breaker left is not kept

    # -- outputs ------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """Drain events."""
        out = list(self._events)
        self._events.clear()  # in place: the keeper appends to this very list
        return out

    def frames_to_send(self) -> list[tuple[PeerId, bytes]]:
        """Drain frames: control first, then pushes round-robin across feeds."""
        out = self.pusher.frames_to_send(
            list(self.sessions.values()), self.now if self._dated else None
        )
        self._undated = self._undated or not self._dated
        self._dated = False  # the next call may come at any time (a post, a drained link)
        return out

    def _tick(self, now: float) -> None:
        """An input at ``now``: the time is known until the frames it causes are drained."""
        self.now = now
        self._dated = True
        if self._undated:
            self._undated = False
            self.repair.date_pushes(now)

    def delivered(self, peer: PeerId, nbytes: int) -> None:
        """The shell has delivered ``nbytes`` of entry frames to ``peer``'s link."""
        s = self.sessions.get(peer)
        if s is not None:
            self.pusher.delivered(s, nbytes)

    def next_deadline(self) -> float | None:
        """Earliest time ``handle_timer`` has work to do."""
        times = [t for t, _ in self.choice.stalls.values()]
        for s in self.sessions.values():
            times += [t for t in (s.clock.notes_at, s.repair.resync_at) if t is not None]
            times += [t for t in s.repair.unacked.values() if t != UNDATED]
            asks = self.repair.asks_due(s) if s.repair.early else None
            if asks is not None:
                times.append(asks)
            if not s.reliable and s.phase is not Phase.CONFIRMED:
                times.append(s.hello.sent_at + self.config.hello_retry_s)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``."""
        self._tick(now)
        self.choice.handle_timer(now)
        for s in list(self.sessions.values()):
            if s.clock.notes_at is not None and s.clock.notes_at <= now:
                self.notes.flush(s, urgent_only=False)
            if (
                not s.reliable
                and s.phase is not Phase.CONFIRMED
                and s.hello.sent_at + self.config.hello_retry_s <= now
            ):
                self.opening.send_hello(s, now)
            if s.repair.resync_at is not None and s.repair.resync_at <= now:
                self.repair.resync(s, now)
            if s.repair.unacked:
                self.repair.ack_due(s, now)
            if s.repair.early:
                self.repair.ask_again(s, now)

    # -- local changes, and status ------------------------------------------------------

    def appended(self, feed: FeedId, seq: int, source: PeerId | None) -> None:
        """An entry was stored (ours, imported, or from ``source``): pass it on."""
        self.pusher.entry_stored(self.sessions.values(), feed, seq, source, self.now)
        self.choice.entry_stored(feed, seq, source, self.now)

    def policy_changed(self) -> None:
        """Who we replicate changed: tell every peer about feeds newly wanted or dropped."""
        replicated = self.host.replicated()
        for s in self.sessions.values():
            s.names.tags_in = None
            self.names.resolve_unknown(s, [f for f in replicated if f not in s.memory.sent])
            for feed in replicated:
                if s.memory.sent.get(feed, -1) == -1:  # new, or "not replicated" before
                    self.choice.adopt(s, feed)
                    s.clock.notes[feed] = True
            for feed in list(s.memory.sent):
                if feed not in replicated and s.memory.sent[feed] != -1:
                    s.clock.notes[feed] = True
                    s.rx.discard(feed)
        self.choice.drop_unwanted(replicated)

    def behind(self, peer: PeerId) -> int:
        """Entries of wanted feeds that ``peer`` says it holds and we lack."""
        s = self.sessions.get(peer)
        if s is None:
            return 0
        total = 0
        for feed, remote in s.memory.remote.items():
            if remote.replicating and feed in self.host.replicated():
                total += max(0, remote.latest - self.host.store.latest_seq(feed))
        return total

    # -- receiving ------------------------------------------------------------------------

    def receive_frame(
        self,
        peer: PeerId,
        frame: bytes,
        now: float,
        ahead: Entry | None = None,
        signature_ok: bool | None = None,
    ) -> None:
        """Handle one frame from ``peer``; ``ahead`` is its entry as ``entries_ahead``
        decoded it, ``signature_ok`` the shell's check of that entry's signature."""
        self._tick(now)
        s = self.sessions.get(peer)
        if s is None or not frame:
            return
        try:
            kind = FrameType(frame[0])
        except ValueError:
            self._misbehaved(s, f"unknown frame type {frame[0]}")
            return
        try:
            if kind is FrameType.HELLO:
                self._on_hello(s, decode_hello(frame))
            elif s.phase is Phase.HELLO_SENT:
                return  # frames before HELLO (it was lost): resync repairs
            elif ahead is not None and kind is FrameType.ENTRY:
                self._on_entry(s, frame, ahead, signature_ok)
            else:
                self._handlers[kind](s, frame)
        except DecodeError as exc:
            self._misbehaved(s, f"bad {kind.name} frame: {exc}")
            return
        except PeerOverLimit as exc:
            self._misbehaved(s, str(exc))
            return
        if s.names.want_keys:
            self.names.send_want_keys(s)

    def _on_hello(self, s: Session, hello: Hello) -> None:
        if hello.version != PROTOCOL_VERSION:
            self._misbehaved(s, f"protocol version {hello.version} is not supported")
            return
        self.opening.on_hello(s, hello, self.now)

    def _on_notes(self, s: Session, frame: bytes) -> None:
        pos = 1
        while pos < len(frame):
            ref, pos = decode_varint(frame, pos)
            note, pos = decode_note(frame, pos)
            feed = self.names.feed_of(s, ref, self.now)
            if feed is not None:
                self._on_note(s, feed, note)

    def _on_run(self, s: Session, frame: bytes) -> None:
        index, pos = decode_varint(frame, 1)
        if index + len(frame) > MAX_INDEX:
            raise DecodeError("RUN indexes exceed 32 bits")
        replicated = self.host.replicated()
        declined: list[bytes] = []
        while pos < len(frame):
            note, pos = decode_note(frame, pos)
            feed = self.names.feed_of(s, make_ref(index, False), self.now)
            unwanted = feed not in replicated if feed is not None else index in s.memory.unknown
            if not s.leader and unwanted and note.replicating:
                # Silence would mean "same seq, push to me": decline feeds we do not keep.
                declined.append(encode_varint(make_ref(index, True)) + encode_note(NOT_REPLICATING))
            index += 1
            if feed is None:
                continue
            self._on_note(s, feed, note)
            if not s.leader and feed in replicated:
                self._answer_leader(s, feed, note, replicated)
        send_notes(s, declined)

    def _answer_leader(
        self, s: Session, feed: FeedId, note: Note, replicated: dict[FeedId, Scope]
    ) -> None:
        """Follower: silence means "same seq, push to me"; speak only where that is untrue."""
        self.choice.adopt(s, feed)
        mine = self.notes.my_note(s, feed, replicated[feed])
        same = mine.latest == note.latest and mine.first == 0 and mine.start < 0
        if same and not mine.lazy and s.reliable:
            s.memory.sent[feed] = told(mine)
            return  # (on a lossy link silence may be a lost answer: always speak)
        s.clock.notes[feed] = True

    def _on_note(self, s: Session, feed: FeedId, note: Note) -> None:
        before = s.memory.remote.get(feed, note)
        s.memory.remote[feed] = note
        if not note.replicating:
            s.flow.push.pop(feed, None)
            s.flow.assumed.pop(feed, None)
            return
        ours = self.host.store.latest_seq(feed)
        # An explicit want is a resend request; otherwise keep entries already in flight.
        keep = note.start < 0 and feed in s.clock.heard and not before.lazy and s.reliable
        # So is a capped peer's ask for a tail we pushed it on our own (push_from), over
        # a stream that delivers in order: it asked before that push reached it.
        keep = keep or (
            s.reliable
            and note.start > note.latest + 1
            and s.flow.pushed_now.get(feed, 0) >= note.start
        )
        stated = feed not in s.clock.heard  # its state as the session opens, not news
        s.clock.heard.add(feed)
        if self.repair.on_ack(s, feed, note, self.now):
            return  # a lossy peer's ack of what is on its way: the pusher keeps its place
        assumed = s.flow.assumed.get(feed, -1)
        s.flow.assumed[feed] = max(assumed, note.latest) if keep else note.latest
        if note.lazy:
            s.flow.push.pop(feed, None)
            if note.start >= 0:  # a query: answer with our state even if we said it before
                s.memory.sent.pop(feed, None)
                self._queue_note(s, feed, urgent=True)
        elif ours >= note.push_from:
            start = s.flow.assumed[feed] + 1 if keep else note.push_from
            if not keep and note.start < 0:  # from a partial peer far behind: its tail only
                start = push_from(note, ours, note.latest)
            schedule_push(s, feed, start, force=not keep)
        if note.latest > ours:
            self.choice.behind(s, feed, self.now, stated=stated)
        elif note.latest < ours and note.lazy:
            self._queue_note(s, feed, urgent=False)

    def entries_ahead(self, peer: PeerId) -> EntriesAhead:
        """Decodes the entries of frames from ``peer`` before their turn (``ebt.ahead``)."""
        return EntriesAhead(self.host, self.sessions, peer)

    def _on_entry(
        self,
        s: Session,
        frame: bytes,
        ahead: Entry | None = None,
        signature_ok: bool | None = None,
    ) -> None:
        ref, seq, body = decode_entry_frame(frame)
        limit = self.host.max_content_bytes
        if ref is None:
            if self.repair.early_full_form(s, body, frame, self.now):
                return
            if ahead is not None and ahead.raw == body:
                self._take_entry(s, ahead, ref=ref, signature_ok=signature_ok)
                return
            entry = decode_entry(body, max_content_bytes=limit)
        else:
            feed = self.names.feed_of(s, ref, self.now)
            if feed is None:
                return
            previous = self.host.store.entry_id(feed, Seq(seq - 1)) if seq > 1 else None
            if seq > 1 and previous is None:
                self.repair.hold_early(s, feed, seq, frame, self.now)
                return
            if ahead is not None and same_entry(ahead, body, feed, seq, previous):
                self._take_entry(s, ahead, ref=ref, signature_ok=signature_ok)
                return
            entry = decode_short_entry(
                body,
                author=feed,
                seq=Seq(seq),
                previous=MsgId(previous) if previous else None,
                max_content_bytes=limit,
            )
        self._take_entry(s, entry, ref=ref)

    def _take_entry(
        self, s: Session, decoded: Entry, *, ref: int | None, signature_ok: bool | None = None
    ) -> None:
        s.memory.received += 1
        s.rtt.answered(decoded.author, decoded.seq, self.now)
        result = self.host.ingest_entry(decoded, source=s.peer, signature_ok=signature_ok)
        entry = result.entry
        if result.outcome is Outcome.ADDED and entry is not None:
            said = s.memory.sent.get(entry.author, -1)
            if not s.reliable:
                self._queue_note(s, entry.author, urgent=False)  # a batched ack
            elif said >= 0:  # the pusher takes for granted that we now hold this seq
                s.memory.sent[entry.author] = max(said, entry.seq << 1 | (said & 1))
            remote = s.memory.remote.get(entry.author)
            if remote is not None and remote.latest < entry.seq:
                s.memory.remote[entry.author] = Note(
                    entry.seq, remote.lazy, remote.first, remote.start
                )
            self._events.append(EntryReceived(peer=s.peer, feed=entry.author, seq=entry.seq))
            self.choice.first_from[entry.author] = s.peer
            self.keeper.entry_added(s)
            self._take_early(entry.author)
        elif result.outcome is Outcome.HELD and entry is not None:
            self.choice.duplicate(s, entry.author, self.now)
        elif result.outcome is Outcome.UNWANTED and entry is not None:
            # Tell a peer that pushes a feed we do not keep to stop, by a name one side
            # gave already: a name made up now would let anyone grow our table of names.
            named = entry.author in s.names.their_index or entry.author in s.names.my_index
            if named:
                s.memory.sent.pop(entry.author, None)
                self._queue_note(s, entry.author, urgent=True)
        elif result.outcome is Outcome.REJECTED and not self.repair.forgive(
            s, result, ref=ref, now=self.now
        ):
            self._misbehaved(s, f"sent an invalid entry: {result.reason}")

    def _take_early(self, feed: FeedId) -> None:
        """Take the entry kept early (``Repair.hold_early``) that now follows what we hold."""
        early = self.repair.next_early(feed)
        if early is None:
            return
        s, frame = early
        try:
            self._on_entry(s, frame)
        except (DecodeError, PeerOverLimit) as exc:
            self._misbehaved(s, f"bad ENTRY frame: {exc}")

    # -- views and shortcuts (the EBT rule tests steer sessions with them) --------------

    @property
    def upstream(self) -> dict[FeedId, PeerId]:
        """The peer we asked to push each feed."""
        return self.choice.upstream

    @property
    def stalls(self) -> dict[FeedId, tuple[float, PeerId]]:
        """Feeds whose upstream is slow: when to switch, and to whom."""
        return self.choice.stalls

    def _set_upstream(self, feed: FeedId, s: Session) -> None:
        self.choice.set_upstream(feed, s, self.now)

    def _queue_note(self, s: Session, feed: FeedId, urgent: bool) -> None:
        self.notes.queue(s, feed, urgent=urgent, now=self.now)

    def _ref(self, s: Session, feed: FeedId) -> int:
        return self.names.ref(s, feed)

"""Opening a session: HELLO both ways, then the leader's whole clock or a delta.

Both sides send HELLO at once. If each remembers the other under the same epochs (and
the same count of sessions), the session is a *delta*: each side mentions only feeds
whose state changed since it last told the peer, and pushes what the remembered remote
clock says the peer lacks. Otherwise memory of the peer is dropped and the *leader*
(smaller node id) sends its whole clock (DEFINE tags + RUN notes); the follower answers
with notes only where it differs (``Replicator._answer_leader``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.frame import EPOCH_BYTES, PROTOCOL_VERSION, FrameType, Hello, encode_hello
from meshnode.core.clocks import Note, PeerMemory, encode_note
from meshnode.core.ebt.notes import send_run, told
from meshnode.core.ebt.push import push_from, schedule_push
from meshnode.core.ebt.session import Phase, Signal

if TYPE_CHECKING:
    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.core.ebt.upstream import UpstreamChoice

__all__ = ["Opening"]

_NO_EPOCH = bytes(EPOCH_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Opening:
    """Sends and takes HELLOs, and the clocks that follow them, for every session."""

    host: Host
    config: ReplicationConfig
    epoch: bytes
    names: FeedNames
    notes: Notes
    choice: UpstreamChoice

    def open(self, s: Session, now: float) -> None:
        """Queue our opening frames to a new session: HELLO, then a delta or a full clock."""
        self.names.resolve_unknown(s, list(self.host.replicated()))
        s.hello.opened_at = now
        self.send_hello(s, now)
        if s.memory.epoch:
            s.hello.delta = True
            self._send_delta(s, now)
        elif s.leader:
            self._send_full(s)
        if not s.reliable:
            s.repair.resync_at = now + self.config.resync_s

    def send_hello(self, s: Session, now: float) -> None:
        """Queue our HELLO (again, on a lossy link that has not confirmed it)."""
        s.hello.sent_at = now
        hello = Hello(
            version=PROTOCOL_VERSION,
            epoch=self.epoch,
            seen_epoch=s.memory.epoch or _NO_EPOCH,
            got_yours=s.phase is not Phase.HELLO_SENT,
            ack_wanted=not s.reliable and s.phase is not Phase.CONFIRMED,
            received=s.memory.received,
            sessions=s.hello.sessions_seen,
        )
        s.emit(encode_hello(hello))

    def on_hello(self, s: Session, hello: Hello, now: float) -> None:
        """Their HELLO (of our version): the first one says whether our memory holds."""
        if s.advance(Signal.HELLO_ACK if hello.got_yours else Signal.HELLO) is not Phase.HELLO_SENT:
            if hello.ack_wanted:
                self.send_hello(s, now)  # a repeated HELLO: only confirm we heard it
            return
        _time_hello(s, hello, now)
        memory = s.memory
        trusted = (
            memory.epoch == hello.epoch
            and hello.seen_epoch == self.epoch
            and hello.sessions == s.hello.sessions_seen
        )
        if not trusted and not s.hello.delta:
            memory.epoch = hello.epoch  # a first meeting: the full clock is already on its way
        elif not trusted:
            self._forget(s, hello.epoch)
            if s.leader:
                self._send_full(s)
        elif hello.received != s.flow.count_at_connect:
            _push_unconfirmed_again(s)
        # A session counts on both sides only when each heard the other: a connection
        # refused right after the handshake must not leave the two counts unequal.
        s.memory.sessions += 1
        # Confirmed up to the peer's count; pushes of this session are still in flight.
        memory.pushed_count = hello.received + memory.pushed_count - s.flow.count_at_connect
        memory.pushed = dict(s.flow.pushed_now)
        if s.clock.notes:
            s.clock.notes_at = now
        if hello.ack_wanted:
            self.send_hello(s, now)  # lossy link: confirm we heard it

    def _send_full(self, s: Session) -> None:
        """Leader's whole clock: every replicated feed, defined and noted in index order."""
        replicated = self.host.replicated()
        self.names.define(s, [f for f in replicated if f not in s.names.my_index])
        for feed in replicated:
            self.choice.adopt(s, feed)
        notes = []
        for feed in s.memory.my_table:
            note = self.notes.my_note(s, feed, replicated.get(feed))
            s.memory.sent[feed] = told(note)
            if note.replicating and feed not in s.memory.remote:
                # Until the follower says otherwise, its silence means "same seq, eager"
                # (lazy on a lossy link, where the follower always answers: silence there
                # is a lost answer, and pushes on a guess would be duplicates).
                s.memory.remote[feed] = Note(note.latest, not s.reliable)
                s.flow.assumed[feed] = note.latest
            notes.append(encode_note(note))
        send_run(s, notes)

    def _send_delta(self, s: Session, now: float) -> None:
        """Reconnect: mention only what changed since we last told the peer; push what it lacks."""
        replicated = self.host.replicated()
        self.names.define(
            s, [f for f in replicated if f not in s.names.my_index and f not in s.names.their_index]
        )
        for feed, scope in replicated.items():
            self.choice.adopt(s, feed)
            # Request skipping: say nothing when the peer already knows our state.
            if s.memory.sent.get(feed) != told(self.notes.my_note(s, feed, scope)):
                s.clock.notes[feed] = True
        for feed, said in s.memory.sent.items():
            if feed not in replicated and said != -1:
                s.clock.notes[feed] = True
        self.notes.flush(s, urgent_only=True)
        for feed, remote in s.memory.remote.items():
            ahead = remote.latest > self.host.store.latest_seq(feed)
            if remote.replicating and feed in replicated and ahead:
                self.choice.behind(s, feed, now)  # it had more when we parted: ask again
            if not remote.lazy and remote.replicating:
                s.flow.assumed[feed] = max(remote.latest, s.memory.pushed.get(feed, 0))
                ours = self.host.store.latest_seq(feed)
                schedule_push(s, feed, push_from(remote, ours, s.flow.assumed[feed]))

    def _forget(self, s: Session, epoch: bytes) -> None:
        """The peer (or we) lost state: start the relationship afresh."""
        # As on a side that met us with no memory at all (this session counts on return).
        s.memory = PeerMemory(epoch=epoch)
        s.hello.sessions_seen = 0
        self.names.forget(s)
        s.clock.heard.clear()
        s.repair.asked.clear()
        s.flow.assumed.clear()
        s.flow.push.clear()
        s.clock.notes.clear()
        s.clock.notes_at = None
        s.hello.delta = False
        s.control = [f for f in s.control if f[0] == FrameType.HELLO]


def _time_hello(s: Session, hello: Hello, now: float) -> None:
    """A first guess of the round trip: their HELLO answers ours, or crossed it on the way."""
    if hello.got_yours:
        s.rtt.sample(now - s.hello.sent_at)
    elif now > s.hello.opened_at:  # both spoke at once: theirs took one way
        s.rtt.sample(2 * (now - s.hello.opened_at))


def _push_unconfirmed_again(s: Session) -> None:
    """Some pushes of earlier sessions never arrived (the peer's count says so)."""
    # Trust only what the peer stated itself, and push again from there every feed pushed
    # before (the peer keeps what it holds; the rest it cannot ask for, never having
    # heard of it).
    memory = s.memory
    s.flow.assumed = {f: n.latest for f, n in memory.remote.items()}
    for feed, nxt in list(s.flow.push.items()):
        s.flow.push[feed] = min(nxt, s.flow.assumed.get(feed, 0) + 1)
    for feed in s.flow.last_pushed:
        remote = memory.remote.get(feed)
        if remote is not None and remote.replicating and not remote.lazy:
            schedule_push(s, feed, remote.latest + 1)

"""One peer's EBT session: its phases as a transition table, and its state in small groups.

Every move between phases is a row of ``TRANSITIONS`` (as in h11's ``_state.py``); a pair
missing from the table is our bug, never the peer's::

    HELLO_SENT --HELLO-->     OPEN --HELLO_ACK--> CONFIRMED
    HELLO_SENT --HELLO_ACK--> CONFIRMED
    any open phase --DISCONNECT--> CLOSED

* ``HELLO_SENT``: our HELLO is out and theirs has not arrived. Other frames are dropped
  (a resync repairs them); only a delta session may speak yet.
* ``OPEN``: their HELLO arrived, but they have not said they heard ours. A lossy link
  resends our HELLO until they do; a reliable link never asks, so it may stay OPEN.
* ``CONFIRMED``: each side heard the other; lossy links may resync.
* ``CLOSED``: disconnected; its memory is saved and nothing more is sent.

The shared vocabulary of the EBT parts lives here too: the link facts, the timers, the
traffic counters and what the replicator needs from its node (``Host``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING, Protocol

from meshnode.errors import LocalProtocolError, MeshnodeError

if TYPE_CHECKING:
    from meshnode.codec.message import Entry
    from meshnode.core.clocks import PeerMemory
    from meshnode.core.feed import IngestResult
    from meshnode.core.policy import Scope
    from meshnode.core.store import Store
    from meshnode.types import FeedId, PeerId

__all__ = [
    "MAX_UNKNOWN_FEEDS",
    "PEER_MEMORY_CAP_BYTES",
    "TRANSITIONS",
    "UNDATED",
    "FeedIndexes",
    "HelloState",
    "Host",
    "LinkInfo",
    "NoteState",
    "PeerOverLimit",
    "Phase",
    "PushState",
    "RepairState",
    "ReplicationConfig",
    "RoundTrip",
    "Session",
    "Signal",
    "TrafficStats",
    "next_phase",
]


UNDATED = float("inf")  # a push made when the time was not known (dated at the next input)
_SLACK_S = 0.05  # scheduling and serialisation beyond the measured round trip
# A note unanswered this long measures nothing (the peer had nothing to push, or it was lost).
_PROBE_GIVEUP_S = 30.0
# A peer's names for feeds we do not keep cost ~100 B of RAM each: 10,000 is ~1 MB per
# link, and several times the feeds a village box's neighbour keeps that it does not.
MAX_UNKNOWN_FEEDS = 10_000
# Disk for the memory of every peer remembered, together: ~100 peers that share 3,000
# feeds each (~600 KB apiece), a small share of any SD card.
PEER_MEMORY_CAP_BYTES = 64 << 20


class PeerOverLimit(MeshnodeError):
    """A peer's frames would grow what we hold about it past a limit: it is dropped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkInfo:
    """What the core needs to know of a link."""

    mtu_bytes: int = 65536
    reliable: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicationConfig:
    """Timers and limits of the replication protocol."""

    note_delay_s: float = 1.0
    stall_timeout_s: float = 5.0
    hello_retry_s: float = 3.0
    resync_s: float = 15.0
    window_bytes: int = 256 * 1024
    max_strikes: int = 3
    max_unknown_feeds: int = MAX_UNKNOWN_FEEDS  # per peer: names of feeds we do not keep
    peer_memory_cap_bytes: int = PEER_MEMORY_CAP_BYTES  # every remembered peer together


@dataclass(slots=True)
class TrafficStats:
    """Bytes sent by kind, for benchmarks and status."""

    control_bytes: int = 0
    entry_bytes: int = 0
    entries: int = 0
    note_sizes: list[int] = field(default_factory=list)


class Host(Protocol):
    """What the replicator needs from the node."""

    feed_id: FeedId
    store: Store

    def replicated(self) -> dict[FeedId, Scope]:
        """Every feed the policy wants, with how much of it (cached by the node)."""
        ...

    def scope(self, feed: FeedId) -> Scope | None:
        """How much of ``feed`` the policy wants, or None."""
        ...

    def ingest_entry(
        self, entry: Entry, source: PeerId | None = None, *, signature_ok: bool | None = None
    ) -> IngestResult:
        """Verify (unless ``signature_ok`` says) and store an entry already decoded."""
        ...

    @property
    def max_content_bytes(self) -> int:
        """Largest content accepted."""
        ...


class Phase(Enum):
    """Where a session stands in its opening handshake."""

    HELLO_SENT = auto()
    OPEN = auto()
    CONFIRMED = auto()
    CLOSED = auto()


class Signal(Enum):
    """What moves a session from one phase to the next."""

    HELLO = auto()  # their HELLO, not saying it heard ours
    HELLO_ACK = auto()  # their HELLO saying it heard ours (got_yours)
    DISCONNECT = auto()


TRANSITIONS: dict[tuple[Phase, Signal], Phase] = {
    (Phase.HELLO_SENT, Signal.HELLO): Phase.OPEN,
    (Phase.HELLO_SENT, Signal.HELLO_ACK): Phase.CONFIRMED,
    (Phase.HELLO_SENT, Signal.DISCONNECT): Phase.CLOSED,
    (Phase.OPEN, Signal.HELLO): Phase.OPEN,
    (Phase.OPEN, Signal.HELLO_ACK): Phase.CONFIRMED,
    (Phase.OPEN, Signal.DISCONNECT): Phase.CLOSED,
    # Once confirmed, a later HELLO without the flag (a stale retry) changes nothing.
    (Phase.CONFIRMED, Signal.HELLO): Phase.CONFIRMED,
    (Phase.CONFIRMED, Signal.HELLO_ACK): Phase.CONFIRMED,
    (Phase.CONFIRMED, Signal.DISCONNECT): Phase.CLOSED,
}


def next_phase(phase: Phase, signal: Signal) -> Phase:
    """The phase ``signal`` moves ``phase`` to; a pair not in the table is our bug."""
    try:
        return TRANSITIONS[phase, signal]
    except KeyError:
        raise LocalProtocolError(f"a session in {phase.name} cannot take {signal.name}") from None


@dataclass(slots=True)
class HelloState:
    """Our side of the HELLO exchange."""

    sent_at: float = 0.0  # when our last HELLO went out
    opened_at: float = 0.0  # when the session began (a peer silent since then is idle)
    delta: bool = False  # opened from memory of the peer: say only what changed
    sessions_seen: int = 0  # memory.sessions as loaded; a session counts once HELLO arrives


@dataclass(slots=True)
class FeedIndexes:
    """How each side names feeds by index (DEFINE, DEFINE_KEY, WANT_KEY)."""

    my_index: dict[FeedId, int] = field(default_factory=dict)  # memory.my_table, inverted
    their_index: dict[FeedId, int] = field(default_factory=dict)  # memory.their_table, inverted
    tags_in: dict[int, list[FeedId]] | None = None  # their tag -> our feeds under it
    wanted_keys: dict[int, float] = field(default_factory=dict)  # WANT_KEY: index -> retry at
    want_keys: list[int] = field(default_factory=list)  # batched into one WANT_KEY frame


@dataclass(slots=True)
class NoteState:
    """Our notes waiting to go out, and what the peer has noted."""

    heard: set[FeedId] = field(default_factory=set)  # feeds the peer noted this session
    notes: dict[FeedId, bool] = field(default_factory=dict)  # feed -> urgent
    notes_at: float | None = None


@dataclass(slots=True)
class PushState:
    """Entries to push, the window, and which pushes the peer has confirmed."""

    push: dict[FeedId, int] = field(default_factory=dict)  # feed -> next seq, round-robin
    assumed: dict[FeedId, int] = field(default_factory=dict)  # latest seq we think it holds
    in_flight: int = 0  # entry bytes not yet reported delivered
    # Pushes not yet confirmed by a HELLO's received count: the count and the feeds (with
    # the last seq pushed) as this session began, and the feeds pushed in this session.
    count_at_connect: int = 0
    last_pushed: dict[FeedId, int] = field(default_factory=dict)
    pushed_now: dict[FeedId, int] = field(default_factory=dict)
    # Lossy links: the highest seq pushed this session and when the feed was last pushed,
    # and single entries to send again (a gap the peer named), ahead of other pushes.
    sent: dict[FeedId, tuple[int, float]] = field(default_factory=dict)
    resend: dict[FeedId, int] = field(default_factory=dict)


@dataclass(slots=True)
class RoundTrip:
    """The link's round-trip time, measured: from the HELLOs, then from a note that asks
    for an entry (a new upstream's, a resend request) to that entry's arrival."""

    srtt_s: float | None = None  # smoothed, as TCP's SRTT (RFC 6298)
    probe: tuple[FeedId, int, float] | None = None  # the note timed: feed, seq asked, when

    def sample(self, rtt_s: float) -> None:
        """Fold one measured round trip into the estimate."""
        rtt_s = max(0.0, rtt_s)
        self.srtt_s = rtt_s if self.srtt_s is None else 0.875 * self.srtt_s + 0.125 * rtt_s

    def start(self, feed: FeedId, seq: int, now: float) -> None:
        """Time the note going out now that asks for entry ``seq`` of ``feed`` (one at a
        time: entries already on their way would answer a second one too soon)."""
        if self.probe is None or now - self.probe[2] > _PROBE_GIVEUP_S:
            self.probe = (feed, seq, now)

    def answered(self, feed: FeedId, seq: int, now: float) -> None:
        """Entry ``seq`` of ``feed`` arrived: the timed note, if it asked for it, is answered."""
        if self.probe is not None and self.probe[:2] == (feed, seq):
            if now - self.probe[2] <= _PROBE_GIVEUP_S:
                self.sample(now - self.probe[2])
            self.probe = None

    def estimate(self, default_s: float) -> float:
        """The estimate, or ``default_s`` before anything was measured."""
        return default_s if self.srtt_s is None else self.srtt_s

    def settle_s(self, default_s: float) -> float:
        """How long after a frame went out its effect is surely seen at the peer, and
        the peer's answer back (the estimate with room for jitter)."""
        return 1.5 * self.estimate(default_s) + _SLACK_S

    def ack_wait_s(self, note_delay_s: float) -> float:
        """How long a push waits for its ack: acks are batched for up to 1.5 note delays,
        then take a round trip to come back."""
        return 1.5 * note_delay_s + self.settle_s(note_delay_s)


@dataclass(slots=True)
class RepairState:
    """Lossy-link repair: resend requests, resyncs, and forgiven bad frames."""

    # Resend requests: feed -> (latest then, when to ask again, times asked for that gap).
    asked: dict[FeedId, tuple[int, float, int]] = field(default_factory=dict)
    resent: dict[FeedId, tuple[int, float]] = field(default_factory=dict)  # seq, when
    # Entries that came before the one they follow, kept until it arrives: feed -> seq -> frame.
    early: dict[FeedId, dict[int, bytes]] = field(default_factory=dict)
    early_count: int = 0
    unacked: dict[FeedId, float] = field(default_factory=dict)  # pushes: when to ask for an ack
    resync_at: float | None = None
    resyncs: int = 0
    resync_backoff: int = 1
    strikes: int = 0


@dataclass(slots=True, kw_only=True)
class Session:
    """Everything one node holds about one connected peer."""

    peer: PeerId
    link: LinkInfo
    memory: PeerMemory
    leader: bool  # the smaller node id sends its whole clock on a first meeting
    reliable: bool
    traffic: TrafficStats  # the replicator's counters, shared by every session
    phase: Phase = Phase.HELLO_SENT
    rx: set[FeedId] = field(default_factory=set)  # feeds we asked this peer to push (eager)
    control: list[bytes] = field(default_factory=list)  # frames waiting, before any push
    hello: HelloState = field(default_factory=HelloState)
    names: FeedIndexes = field(default_factory=FeedIndexes)
    clock: NoteState = field(default_factory=NoteState)
    flow: PushState = field(default_factory=PushState)
    repair: RepairState = field(default_factory=RepairState)
    rtt: RoundTrip = field(default_factory=RoundTrip)
    added: int = 0  # entries this peer gave us that we stored, this session

    @classmethod
    def begin(
        cls, peer: PeerId, link: LinkInfo, memory: PeerMemory, *, me: FeedId, traffic: TrafficStats
    ) -> Session:
        """A new session with ``peer``, picking up what ``memory`` remembers of it."""
        return cls(
            peer=peer,
            link=link,
            memory=memory,
            leader=me < peer,
            reliable=link.reliable,
            traffic=traffic,
            hello=HelloState(sessions_seen=memory.sessions),
            names=FeedIndexes(
                my_index={f: i for i, f in enumerate(memory.my_table)},
                their_index={f: i for i, f in memory.their_table.items()},
            ),
            flow=PushState(count_at_connect=memory.pushed_count, last_pushed=dict(memory.pushed)),
        )

    def advance(self, signal: Signal) -> Phase:
        """Move to the phase ``signal`` leads to; returns the phase before."""
        before = self.phase
        self.phase = next_phase(before, signal)
        return before

    def emit(self, frame: bytes) -> None:
        """Queue a control frame (counted as control traffic)."""
        self.traffic.control_bytes += len(frame)
        self.control.append(frame)

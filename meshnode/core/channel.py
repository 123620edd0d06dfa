"""Shared-channel replication (sans-IO): radios, where one transmission reaches everyone.

Point-to-point links run EBT sessions (replication.py); a radio channel has no sessions.
Every message is a broadcast (codec/channel.py) that any listener may use, so an entry
sent once serves every neighbour that wants it. The rules:

* Pull, with no ACKs. A node broadcasts WANT for feeds it wants from the seq after what
  it holds. Any neighbour holding those entries answers with up to ``entries_per_want``
  of them, round-robin across the feeds named, so one lost frame costs one entry per
  feed, not a whole run. A later WANT asks again for whatever did not arrive.
* Suppression (Trickle, RFC 6206). Answers wait a random backoff; an entry overheard from
  another node is not sent again, and a WANT overheard asking the same is not repeated.
  WANT and BEACON timers double from their minimum up to their maximum while nothing
  changes, and drop back to the minimum when something does.
* Push when waited for. A WANT for a seq we do not hold yet is remembered, so the entry
  goes out as soon as we get it (our own post, or from another link) without another
  WANT round trip; entries that nobody waits for are announced with a small HAVE.
* Beacons carry our short id, the network tag and a digest of our clock: they are how
  neighbours find each other, and a changed digest makes listeners ask for news. WANTs
  from nodes whose beacon named another network are ignored.
* Out-of-order entries (after a loss) wait in a small buffer until the gap is filled.
* Nothing twice on a slow link: a receiver holds its WANT while a feed's entries arrive
  in order (for two frames of the link's rate after each) or while the link mends a
  message in parts (``arriving``; a known gap is still asked for), and a sender neither
  sends again an entry still on its way (sent within ``in_flight_s``, plus what the link
  says mending may add: ``mending``) nor, repairing a lost one, those it sent after its
  first sending (the asker keeps them until the gap fills).
* Control first: when a beacon, HAVE or WANT is due with an entry, the short control
  message goes first; it steers what the entries should be.
* Messages are not signed, so strangers are kept in check (neighbours.py): the table of
  neighbours is capped, resets of our timers caused by what a neighbour says are allowed
  only so often, and a ``held`` time is believed up to _MAX_HELD_HONOURED_S.

The shell owns the air: it calls ``poll_transmit`` when the channel is free and its
airtime budget allows control or data traffic, and arms a timer for ``next_deadline``.
Parts: timers in channel_config.py; the feeds, their tags and the entries messages carry
in channel_feeds.py; the entries owed to neighbours in channel_serving.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.channel import (
    MAX_HELD_S,
    Beacon,
    EntryMessage,
    Have,
    Want,
    clock_digest,
    decode_message,
    encode_beacon,
    encode_have,
    encode_want,
)
from meshnode.core.channel_config import ChannelConfig
from meshnode.core.channel_feeds import ChannelFeeds
from meshnode.core.channel_serving import MAX_PENDING, Serving
from meshnode.core.events import Event, EventQueue, MessageDropped, NeighbourHeard
from meshnode.core.neighbours import Neighbours
from meshnode.core.trickle import Trickle
from meshnode.errors import DecodeError
from meshnode.secure.identity import network_tag
from meshnode.types import FeedId, PeerId, Rng

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.core.node import Node

__all__ = ["Channel", "ChannelConfig", "ChannelStats", "Transmission"]


_HEADER_BYTES = 5  # src + type
_PAIR_BYTES = 9  # a tag and a varint of up to 5 bytes
_BEACON_REDUNDANCY = 1  # Trickle k: skip our beacon after hearing this many calm ones
_BEHIND_WANT_FACTOR = 8  # while behind, WANT at most every 8 x want_min_s
# A budget's window is an hour (radio/airtime.py): no real node's entries are held longer,
# so a beacon claiming more (up to MAX_HELD_S, 18 h) defers our wants no further than this.
_MAX_HELD_HONOURED_S = 3600.0
# A real node beacons at most once per half its minimum interval (Trickle); a quarter
# leaves room for radios of the channel whose frames differ a little.
_PROVEN_RESET_FACTOR = 0.25
# Resets by strangers (neighbours that never delivered an entry), all of them together:
# one per half the longest beacon interval, so a flood of forged beacons costs a few
# extra beacons and wants an hour, not the control share.
_STRANGER_RESET_FACTOR = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmission:
    """One message to put on the air; ``control`` counts against the control share."""

    message: bytes
    control: bool


@dataclass(slots=True)
class ChannelStats:
    """What went over this channel, for status and benchmarks."""

    control_bytes: int = 0
    data_bytes: int = 0
    entries_sent: int = 0
    entries_added: int = 0
    duplicates: int = 0
    suppressed: int = 0
    malformed: int = 0


class Channel:
    """Replication over one shared broadcast channel for one node."""

    def __init__(self, node: Node, *, config: ChannelConfig, rng: Rng) -> None:
        self.node = node
        self.config = config
        self.rng = rng
        self.src = bytes(node.feed_id[:4])
        self.net = bytes.fromhex(network_tag(node.network_key))
        self.source = PeerId(b"channel:" + self.src)  # marks entries that came from here
        self.stats = ChannelStats()
        self._events = EventQueue()
        self.neighbours = Neighbours(
            proven_gap_s=_PROVEN_RESET_FACTOR * config.beacon_min_s,
            stranger_every_s=_STRANGER_RESET_FACTOR * config.beacon_max_s,
        )
        self.now = 0.0
        self._feeds = ChannelFeeds(node)
        self._beacon = Trickle(config.beacon_min_s, config.beacon_max_s)
        self._want = Trickle(config.want_min_s, config.want_max_s)
        self._want_hold_until = 0.0
        self._hold_told = False
        self._want_deferred_until = 0.0
        self._serving = Serving(node, config=config, rng=rng, events=self._events, tag=self._tag)
        self._waiting: dict[FeedId, tuple[int, float]] = {}
        # The most a neighbour said it holds, believed until then (a claim nobody can
        # check must not keep us asking, or asking from a made-up seq, for ever).
        self._heard: dict[FeedId, tuple[int, float]] = {}
        self._covered: dict[FeedId, tuple[int, float]] = {}  # wants overheard: seq, until
        self._skipped: dict[FeedId, int] = {}  # the seq we last left to a covering want
        self._have: set[FeedId] = set()
        self._have_at: float | None = None
        self._pending: dict[FeedId, dict[int, EntryMessage]] = {}
        self._rotate = 0
        node.add_append_listener(self._appended)

    # -- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The channel is up: introduce ourselves and ask for news soon."""
        self.now = now
        self._beacon.begin(now, self.rng, self.config.beacon_min_s)
        self._beacon.fire_at = now + self.rng.uniform(0, self.config.backoff_s)
        self._want.reset(now, self.rng)

    def receive(self, message: bytes, now: float) -> None:
        """One whole message heard on the channel; malformed ones are counted and dropped."""
        self.now = now
        try:
            decoded = decode_message(message)
        except DecodeError as exc:
            self.stats.malformed += 1
            self._events.push(MessageDropped(reason=str(exc)))
            return
        if decoded.src == self.src:
            return  # our own, echoed by a repeater or a loop
        if isinstance(decoded, Beacon):
            self._on_beacon(decoded)
        elif isinstance(decoded, EntryMessage):
            self._on_entry(decoded)
        elif isinstance(decoded, Want):
            self._on_want(decoded)
        else:
            self._on_have(decoded)

    def handle_timer(self, now: float) -> None:
        """Advance time (the timers' work happens in poll_transmit)."""
        self.now = now
        for feed in [f for f, (_, until) in self._covered.items() if until <= now]:
            del self._covered[feed]
        for feed in [f for f, (_, until) in self._waiting.items() if until <= now]:
            del self._waiting[feed]
        for feed in [f for f, (_, until) in self._heard.items() if until <= now]:
            del self._heard[feed]

    def arriving(self, now: float) -> None:
        """The link is receiving a message in parts: do not ask for it again meanwhile
        (unless a gap is known: an entry lost whole, which only a WANT brings again)."""
        self.now = now
        if not any(self._pending.values()):
            self._hold_want(now)

    def mending(self, extra_s: float) -> None:
        """The link mends messages in parts: one sent may take ``extra_s`` more to arrive."""
        self._serving.extra_in_flight_s = extra_s

    def _hold_want(self, now: float) -> None:
        # More may be coming: ask again only once the stream has stopped for a while
        # (a pause of two backoffs, and never less than two frames of the link's rate).
        hold_s = max(2 * self.config.backoff_s, 2 * self.config.frame_s)
        self._want_hold_until = max(self._want_hold_until, now + hold_s)

    def events(self) -> list[Event]:
        """Drain the channel's events for the shell to log."""
        return self._events.drain()

    def next_deadline(self, kind: str | None = None) -> float | None:
        """When poll_transmit may next have something to send (of ``kind``, if given)."""
        times: list[float | None] = []
        if kind != "data":
            times += [self._beacon.fire_at, self._have_at]
            if self._want.fire_at is not None:
                times.append(max(self._want.fire_at, self._want_hold_until))
        if kind != "control" and self._serving:
            times.append(self._serving.at)
        found = [t for t in times if t is not None]
        return min(found) if found else None

    def next_wake(self, now: float, budget_wait_s: Callable[[str], float]) -> float | None:
        """When to poll next, given how long the budget holds each kind from ``now``."""
        times = []
        for kind in ("control", "data"):
            deadline = self.next_deadline(kind)
            if deadline is not None:
                times.append(max(deadline, now + budget_wait_s(kind)))
        return min(times, default=None)

    def poll_transmit(
        self, now: float, *, control_ok: bool, data_ok: bool, data_at: float | None = None
    ) -> Transmission | None:
        """The next message to send now, if any (the shell checked the air and the budget).

        ``data_at``: when data is held, the time the budget allows it again, if known.
        """
        self.now = now
        held_s = self._held_s(now, data_ok, data_at)
        if held_s and not self._hold_told:
            self._beacon.reset(now, self.rng)  # tell those waiting not to ask again yet
        self._hold_told = bool(held_s)
        if control_ok:
            tx = self._next_control(now, held_s)
            if tx is not None:
                return tx
        if data_ok and self._serving.due(now):
            message = self._serving.next_entry(now)
            if message is not None:
                return self._sent(message, control=False)
        return None

    def _next_control(self, now: float, held_s: int) -> Transmission | None:
        """A due beacon, HAVE or WANT: control goes first, being short and steering the rest."""
        if self._beacon.fire_at is not None and self._beacon.fire_at <= now:
            calm = self._beacon.heard >= _BEACON_REDUNDANCY and not held_s
            self._beacon.next_interval(now, self.rng)
            if not calm:
                digest = clock_digest(self._feeds.held())
                return self._sent(encode_beacon(self.src, self.net, digest, held_s), control=True)
            self.stats.suppressed += 1
        if self._have_at is not None and self._have_at <= now:
            tx = self._send_have()
            if tx is not None:
                return tx
        due = self._want.fire_at
        if due is not None and due <= now and self._want_hold_until <= now:
            return self._send_want()
        return None

    def _held_s(self, now: float, data_ok: bool, data_at: float | None) -> int:
        """Whole seconds the budget holds entries someone waits for (0: none held)."""
        if data_ok or data_at is None or not self._serving or data_at <= now:
            return 0
        return min(MAX_HELD_S, math.ceil(data_at - now))

    def _tag(self, feed: FeedId) -> bytes:
        return self._feeds.tag(feed)

    # -- receiving ----------------------------------------------------------------------

    def _on_beacon(self, beacon: Beacon) -> None:
        known = self.neighbours.get(beacon.src)
        old_digest = None if known is None else known.digest
        net_ok = beacon.net == self.net
        self.neighbours.heard(beacon.src, net_ok=net_ok, digest=beacon.digest, now=self.now)
        if not net_ok:
            return
        if old_digest is None:
            self._events.push(NeighbourHeard(short_id=beacon.src))
            if self.neighbours.may_reset(beacon.src, self.now):
                self._beacon.reset(self.now, self.rng)  # introduce ourselves to it
                self._want.reset(self.now, self.rng)
        elif old_digest != beacon.digest:
            # It holds something new; while a neighbour's entries are held, a HAVE (news
            # from another link) still asks at once, a changed digest waits for them.
            if self.now >= self._want_deferred_until and self.neighbours.may_reset(
                beacon.src, self.now
            ):
                self._want.reset(self.now, self.rng)
        else:
            self._beacon.heard += 1  # Trickle: the neighbourhood is calm, one voice is enough
        if beacon.held_s:  # what we asked of it cannot come sooner: ask again after that
            held_s = min(beacon.held_s, _MAX_HELD_HONOURED_S)
            at = self.now + held_s + self.rng.uniform(0, self.config.backoff_s)
            self._want.defer(self.now, at)
            self._want_deferred_until = max(self._want_deferred_until, at)

    def _on_have(self, have: Have) -> None:
        store = self.node.store
        news = [
            (feed, latest)
            for tag, latest in have.haves
            for feed in self._feeds.feeds(tag)
            if latest > store.latest_seq(feed)
        ]
        if not news or not self.neighbours.may_reset(have.src, self.now):
            return  # nothing new, or claims past what its sender may make us act on
        until = self.now + self.config.waiting_s
        for feed, latest in news:
            self._heard[feed] = (max(self._heard.get(feed, (0, 0.0))[0], latest), until)
        self._want.reset(self.now, self.rng)

    def _on_want(self, want: Want) -> None:
        neighbour = self.neighbours.get(want.src)
        if neighbour is not None and not neighbour.net_ok:
            return
        if neighbour is None and self.neighbours.may_reset(want.src, self.now):
            self._beacon.reset(self.now, self.rng)  # a stranger: tell it who we are
        store = self.node.store
        for tag, next_seq, empty in want.wants:
            for feed in self._feeds.feeds(tag):
                # Its answer serves us too: do not ask the same within our own interval.
                quiet_s = max(self.config.want_min_s, self._want.interval_s)
                self._covered[feed] = (next_seq, self.now + quiet_s)
                head = store.head(feed)
                if head is None or next_seq > head.latest:
                    self._waiting[feed] = (next_seq, self.now + self.config.waiting_s)
                    continue
                start = max(next_seq, head.first)
                if next_seq < head.first and not empty:
                    continue  # it holds entries before our range: it must ask elsewhere
                self._serving.schedule(feed, start, full_first=empty and start > 1, now=self.now)

    def _on_entry(self, message: EntryMessage) -> None:
        feeds = self._feeds.feeds(message.tag)
        for feed in feeds:
            if self._serving.overheard(feed, message.seq):  # someone else sent it
                self.stats.suppressed += 1
        for feed in feeds:
            added = self.stats.entries_added
            if self._try_entry(feed, message):
                # A neighbour of our network; one that gave us a new (verified) entry is
                # useful, and is kept and believed before strangers.
                stored = self.stats.entries_added > added
                self.neighbours.delivered(message.src, self.now, stored=stored)
                return
        for feed in feeds:  # not the next one of any feed: keep it until the gap fills
            if message.seq > self.node.store.latest_seq(feed) + 1:
                pending = self._pending.setdefault(feed, {})
                if len(pending) < MAX_PENDING:
                    pending[message.seq] = message
                self._want.reset(self.now, self.rng)

    def _try_entry(self, feed: FeedId, message: EntryMessage) -> bool:
        """Store ``message`` as the next entry of ``feed`` if it is one; True if it was."""
        store = self.node.store
        latest = store.latest_seq(feed)
        if message.seq <= latest and latest:
            self.stats.duplicates += 1
            return True
        entry = self._feeds.entry(feed, message, latest)
        if entry is None:
            return False
        result = self.node.ingest_entry(entry, source=self.source)
        if result.outcome.value != "added":
            return False
        self.stats.entries_added += 1
        self._hold_want(self.now)
        nxt = self._pending.get(feed, {}).pop(message.seq + 1, None)
        if nxt is not None:
            self._try_entry(feed, nxt)
        return True

    def _appended(self, feed: FeedId, seq: int, source: PeerId | None) -> None:
        if source == self.source or feed not in self._feeds.replicated():
            return
        waiting = self._waiting.get(feed)
        if waiting is not None and waiting[0] == seq:
            del self._waiting[feed]
            # Someone waits for exactly this.
            self._serving.schedule(feed, seq, full_first=False, now=self.now)
            return
        self._have.add(feed)
        if self._have_at is None:
            self._have_at = self.now + self.rng.uniform(0, self.config.backoff_s)
        self._beacon.reset(self.now, self.rng)

    # -- sending ------------------------------------------------------------------------

    def _sent(self, message: bytes, *, control: bool) -> Transmission:
        if control:
            self.stats.control_bytes += len(message)
        else:
            self.stats.data_bytes += len(message)
            self.stats.entries_sent += 1
        return Transmission(message=message, control=control)

    def _send_have(self) -> Transmission | None:
        store = self.node.store
        budget = (self.config.mtu_bytes - _HEADER_BYTES) // _PAIR_BYTES
        feeds = sorted(self._have)[:budget]
        self._have.difference_update(feeds)
        self._have_at = None if not self._have else self.now
        haves = [(self._tag(f), store.latest_seq(f)) for f in feeds if store.latest_seq(f)]
        if not haves:
            return None
        return self._sent(encode_have(self.src, haves), control=True)

    def _send_want(self) -> Transmission | None:
        """A WANT for the feeds we are behind on (or all, in turn), less those overheard."""
        self._want.next_interval(self.now, self.rng)
        wants = self._feeds.replicated()
        store = self.node.store
        behind: list[tuple[bytes, int, bool]] = []
        rest: list[tuple[bytes, int, bool]] = []
        for feed, want in wants.items():
            if feed == self.node.feed_id:
                continue
            latest = store.latest_seq(feed)
            heard = self._heard.get(feed, (0, 0.0))[0]
            next_seq = latest + 1
            if not latest and want.max_entries is not None and heard:
                next_seq = max(1, heard - want.max_entries + 1)
            covered = self._covered.get(feed)
            # A neighbour asked for the same: its answer serves us too. Only once in a row:
            # a WANT nobody answers (a forger's, or one the holder could not hear) must not
            # keep us from asking.
            if covered is not None and covered[0] == next_seq != self._skipped.get(feed):
                self._skipped[feed] = next_seq
                continue
            self._skipped.pop(feed, None)
            (behind if heard > latest or feed in self._pending else rest).append(
                (self._tag(feed), next_seq, latest == 0)
            )
        room = (self.config.mtu_bytes - _HEADER_BYTES) // _PAIR_BYTES
        if len(rest) > room:  # ask for the rest in turns
            start = self._rotate % len(rest)
            rest = rest[start:] + rest[:start]
            self._rotate += room
        chosen = (behind + rest)[:room]
        if behind and self.now >= self._want_deferred_until:
            # Known to be behind (a HAVE or a gap said so) and no neighbour said to wait:
            # keep asking at a short interval instead of backing off to want_max_s.
            self._want.limit(self.now, _BEHIND_WANT_FACTOR * self.config.want_min_s, self.rng)
        if not chosen:
            self.stats.suppressed += 1
            return None
        return self._sent(encode_want(self.src, chosen), control=True)

    def neighbour_ids(self) -> list[str]:
        """Short ids (hex) of the neighbours of our network heard so far."""
        return sorted(n.hex() for n in self.neighbours.ids())

    def status(self) -> dict[str, object]:
        """JSON-ready counters and neighbours."""
        return {
            "neighbours": self.neighbour_ids(),
            "serving": len(self._serving),
            "waiting": len(self._waiting),
            "control_bytes": self.stats.control_bytes,
            "data_bytes": self.stats.data_bytes,
            "entries_sent": self.stats.entries_sent,
            "entries_added": self.stats.entries_added,
            "duplicates": self.stats.duplicates,
            "suppressed": self.stats.suppressed,
            "malformed": self.stats.malformed,
            "neighbours_forgotten": self.neighbours.evicted,  # to make room (a beacon flood?)
            "resets_refused": self.neighbours.resets_refused,
            "next_beacon_s": None
            if self._beacon.fire_at is None
            else max(0.0, round(self._beacon.fire_at - self.now, 1)),
        }

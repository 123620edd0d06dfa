"""Upstream choice: which peer pushes each feed to us (eager), and when to switch.

Each wanted feed has one *upstream* peer that we asked to push it; other peers are lazy
and only note what they have. A duplicate pushed by a peer that is not our upstream makes
that peer lazy. A note about an entry we lack makes its sender our upstream after a
*stall* (the claimant is asked when it falls due): when the current upstream cannot
serve it, one measured round trip of the upstream's for entries a newcomer held as its
session opened, two note delays for news of an entry just appended (it races the
upstream's push); else ``stall_timeout_s`` without progress. At once when the upstream
has not said HELLO within ``note_delay_s`` of connecting. On a lossy link the request to
push is made again, an ack's wait later, while nothing comes (it may have been lost).
Losing an upstream re-routes its feeds to the peer that has the most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.core.ebt.session import Phase

if TYPE_CHECKING:
    from collections.abc import Container

    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.types import FeedId, PeerId

__all__ = ["UpstreamChoice"]

_BEHIND_RTTS = 1.0  # round trips an upstream without a claimed entry is given to push it
_FREE_ASKS = 3  # lossy: requests to push that go unanswered before they back off


@dataclass(slots=True, kw_only=True, eq=False)
class UpstreamChoice:
    """The upstream of every wanted feed, and the stalls that may replace it."""

    host: Host
    config: ReplicationConfig
    sessions: dict[PeerId, Session]  # the replicator's live sessions (shared, not copied)
    notes: Notes
    upstream: dict[FeedId, PeerId] = field(default_factory=dict)
    stalls: dict[FeedId, tuple[float, PeerId]] = field(default_factory=dict)  # (due, claimant)
    first_from: dict[FeedId, PeerId] = field(default_factory=dict)  # who sent the latest entry
    asked_again: dict[FeedId, int] = field(default_factory=dict)  # lossy: requests unanswered

    # -- choosing -------------------------------------------------------------------------

    def adopt(self, s: Session, feed: FeedId) -> None:
        """Ask ``s`` to push ``feed`` if no live peer does yet."""
        if feed not in self.upstream:
            self.upstream[feed] = s.peer
            s.rx.add(feed)

    def set_upstream(self, feed: FeedId, s: Session, now: float) -> None:
        """Make ``s`` the upstream of ``feed``; the one before it turns lazy."""
        old = self.upstream.get(feed)
        if old is not None and old in self.sessions and old != s.peer:
            previous = self.sessions[old]
            previous.rx.discard(feed)
            self.notes.queue(previous, feed, urgent=True, now=now)
        self.upstream[feed] = s.peer
        s.rx.add(feed)
        self.notes.queue(s, feed, urgent=True, now=now)
        if not s.reliable and self._peer_latest(s.peer, feed) > self.host.store.latest_seq(feed):
            # The note may be lost: ask again if nothing comes (handle_timer), less and
            # less often while nothing does.
            backoff = 2 ** max(0, self.asked_again.get(feed, 0) - _FREE_ASKS)
            wait = min(s.rtt.ack_wait_s(self.config.note_delay_s) * backoff, self.config.resync_s)
            self.stalls.setdefault(feed, (now + wait, s.peer))
        if old != s.peer:
            s.rtt.start(feed, self.host.store.latest_seq(feed) + 1, now)

    def behind(self, s: Session, feed: FeedId, now: float, *, stated: bool = False) -> None:
        """``s`` says it has more of ``feed`` than we do (``stated``: in the first note of
        the feed in its session, so of entries it may have held for long)."""
        if self.host.scope(feed) is None:
            return
        up = self.upstream.get(feed)
        ours = self.host.store.latest_seq(feed)
        if not self._can_serve(s.peer, feed, ours):
            return  # a capped peer without our next entry: never wait on it
        if up == s.peer:
            if not s.reliable:
                s.memory.sent.pop(feed, None)  # it may never have heard that we are eager
            self.set_upstream(feed, s, now)  # says "eager" again only if we had said "lazy"
            return
        if up is None or up not in self.sessions or self._silent(up, now):
            self.set_upstream(feed, s, now)
        elif feed in self.stalls:
            due, claimant = self.stalls[feed]
            if self._peer_latest(s.peer, feed) > self._peer_latest(claimant, feed):
                self.stalls[feed] = (due, s.peer)  # a longer claim: switch to it when due
        else:
            # EBT: give the upstream time to deliver before asking another peer; less
            # when it cannot serve the entry, since it may never get it. News of an
            # entry just appended races the upstream's push of it (a note waits a note
            # delay, a push does not): two note delays. Entries a newcomer held as its
            # session opened, an upstream of longer standing would have pushed by now:
            # a round trip, for a push already on its way.
            wait = self.config.stall_timeout_s
            if not self._can_serve(up, feed, ours):
                wait = min(wait, self._behind_wait(self.sessions[up], s, stated=stated))
            self.stalls[feed] = (now + wait, s.peer)

    def duplicate(self, s: Session, feed: FeedId, now: float) -> None:
        """EBT: a duplicate from an eager peer turns it lazy; the first sender stays eager."""
        if feed not in s.rx:
            if not s.reliable:  # our "lazy" was lost on the way: say it again
                s.memory.sent.pop(feed, None)
                self.notes.queue(s, feed, urgent=True, now=now)
            return
        first = self.first_from.get(feed)
        if first is None or first == s.peer or first not in self.sessions:
            return
        if feed not in self.sessions[first].rx:
            return
        s.rx.discard(feed)
        self.upstream[feed] = first
        self.notes.queue(s, feed, urgent=True, now=now)

    # -- events ---------------------------------------------------------------------------

    def entry_stored(self, feed: FeedId, seq: int, source: PeerId | None, now: float) -> None:
        """An entry of ``feed`` was stored: settle or renew its stall, or recall a claim."""
        self.asked_again.pop(feed, None)
        stall = self.stalls.get(feed)
        if stall is not None and self._peer_latest(stall[1], feed) <= seq:
            del self.stalls[feed]
        elif stall is not None and source is not None and source == self.upstream.get(feed):
            # The upstream is delivering, only slowly: give it a full timeout again.
            self.stalls[feed] = (now + self.config.stall_timeout_s, stall[1])
        if feed not in self.stalls:
            # Someone may have claimed more than this entry: do not forget the claim.
            claimant = self._best_claim(feed, seq)
            if claimant is not None:
                self.behind(claimant, feed, now)

    def peer_gone(self, peer: PeerId, now: float) -> None:
        """``peer``'s session closed: re-route its feeds and drop its claims."""
        for feed in [f for f, p in self.upstream.items() if p == peer]:
            del self.upstream[feed]
            best = self._best_claim(feed, -1)  # the peer that has the most of it
            if best is not None:
                self.set_upstream(feed, best, now)
        for feed in [f for f, (_, p) in self.stalls.items() if p == peer]:
            del self.stalls[feed]

    def drop_unwanted(self, replicated: Container[FeedId]) -> None:
        """Forget the upstream of every feed the policy no longer wants."""
        for feed in [f for f in self.upstream if f not in replicated]:
            del self.upstream[feed]
            self.asked_again.pop(feed, None)

    def handle_timer(self, now: float) -> None:
        """Switch each stall due at ``now`` to its claimant, if it can still serve."""
        for feed, (due, peer) in list(self.stalls.items()):
            if due <= now:
                del self.stalls[feed]
                ours = self.host.store.latest_seq(feed)
                if peer == self.upstream.get(feed):
                    # A lossy upstream asked again, and still nothing: another peer that
                    # has it, if any (this one may not understand what we ask).
                    other = self._best_claim(feed, ours, besides=peer)
                    peer = other.peer if other is not None else peer
                    self.asked_again[feed] = self.asked_again.get(feed, 0) + 1
                if self._can_serve(peer, feed, ours):
                    s = self.sessions[peer]
                    if not s.reliable:
                        s.memory.sent.pop(feed, None)  # say "eager" even if said before
                    self.set_upstream(feed, s, now)

    # -- claims ---------------------------------------------------------------------------

    def _best_claim(self, feed: FeedId, seq: int, besides: PeerId | None = None) -> Session | None:
        """The session whose peer (not ``besides``) claims the most of ``feed`` beyond
        ``seq``, if any."""
        best: Session | None = None
        most = seq
        for s in self.sessions.values():
            if besides is not None and (
                s.peer == besides or not self._can_serve(s.peer, feed, seq)
            ):
                continue
            remote = s.memory.remote.get(feed)
            if remote is not None and remote.replicating and remote.latest > most:
                best, most = s, remote.latest
        return best

    def _peer_latest(self, peer: PeerId, feed: FeedId) -> int:
        s = self.sessions.get(peer)
        remote = s.memory.remote.get(feed) if s else None
        return remote.latest if remote else 0

    def _behind_wait(self, up: Session, claimant: Session, *, stated: bool) -> float:
        """How long ``up``, which lacks an entry ``claimant`` claims, keeps the feed."""
        racing = 2 * self.config.note_delay_s
        if not stated:
            return racing
        settle = up.rtt.settle_s(self.config.note_delay_s)
        if up.hello.opened_at + settle > claimant.hello.opened_at:
            return racing  # the two sessions began together: the upstream may be catching up
        return _BEHIND_RTTS * up.rtt.estimate(self.config.note_delay_s)

    def _silent(self, peer: PeerId, now: float) -> bool:
        """True when ``peer`` has not even sent its HELLO in ``note_delay_s`` since its
        session began: a link that says nothing (an idle stranger holding a slot) must not
        keep a feed from a peer that claims its entries."""
        s = self.sessions[peer]
        return s.phase is Phase.HELLO_SENT and now - s.hello.opened_at > self.config.note_delay_s

    def _can_serve(self, peer: PeerId, feed: FeedId, ours: int) -> bool:
        """True when ``peer`` claims the entry after ``ours`` (a capped peer may not hold it)."""
        s = self.sessions.get(peer)
        remote = s.memory.remote.get(feed) if s else None
        if remote is None or remote.latest <= ours:
            return False
        if ours == 0 and self._capped(feed):
            return True  # a capped feed may start anywhere
        return max(remote.first, 1) <= ours + 1

    def _capped(self, feed: FeedId) -> bool:
        scope = self.host.scope(feed)
        return scope is not None and scope.max_entries is not None

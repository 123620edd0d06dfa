"""Upstream choice: which peer pushes each feed to us (eager), and when to switch.

Each wanted feed has one *upstream* peer that we asked to push it; other peers are lazy
and only note what they have. A duplicate pushed by a peer that is not our upstream makes
that peer lazy. A note about an entry we lack makes its sender our upstream at once when
the current upstream cannot serve it, else after ``stall_timeout_s`` without progress (a
*stall*: the claimant is asked when it falls due), and at once when the upstream has not
said HELLO within ``note_delay_s`` of connecting. Losing an upstream re-routes its feeds
to the peer that has the most.
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

    def behind(self, s: Session, feed: FeedId, now: float) -> None:
        """``s`` says it has more of ``feed`` than we do."""
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
            # when it cannot serve the entry, since it may never get it.
            wait = self.config.stall_timeout_s
            if not self._can_serve(up, feed, ours):
                wait = min(wait, 2 * self.config.note_delay_s)
            self.stalls[feed] = (now + wait, s.peer)

    def duplicate(self, s: Session, feed: FeedId, now: float) -> None:
        """EBT: a duplicate from an eager peer turns it lazy; the first sender stays eager."""
        if feed not in s.rx:
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

    def handle_timer(self, now: float) -> None:
        """Switch each stall due at ``now`` to its claimant, if it can still serve."""
        for feed, (due, peer) in list(self.stalls.items()):
            if due <= now:
                del self.stalls[feed]
                if self._can_serve(peer, feed, self.host.store.latest_seq(feed)):
                    self.set_upstream(feed, self.sessions[peer], now)

    # -- claims ---------------------------------------------------------------------------

    def _best_claim(self, feed: FeedId, seq: int) -> Session | None:
        """The session whose peer claims the most of ``feed`` beyond ``seq``, if any."""
        best: Session | None = None
        most = seq
        for s in self.sessions.values():
            remote = s.memory.remote.get(feed)
            if remote is not None and remote.replicating and remote.latest > most:
                best, most = s, remote.latest
        return best

    def _peer_latest(self, peer: PeerId, feed: FeedId) -> int:
        s = self.sessions.get(peer)
        remote = s.memory.remote.get(feed) if s else None
        return remote.latest if remote else 0

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
        return ours == 0 or max(remote.first, 1) <= ours + 1

"""Peer memory between sessions: loaded on connect, saved on disconnect, within bounds.

Stored memory of a peer lets a reconnect mention only what changed (request skipping).
Losing it costs only a first meeting's full clock, never correctness (HELLO's session
count makes both sides start afresh), so keeping it is a saving, and strangers cannot make
us keep much of it:

* One peer's memory is at most ``MAX_PEER_MEMORY_BYTES`` encoded (and at most the total
  cap). A larger one is not kept: the stored copy is forgotten, and one event says so; a
  stored one over the limit (from an older version) is forgotten, not decoded.
* At most ``MAX_REMEMBERED_PEERS`` peers, and ``peer_memory_cap_bytes`` in all, are kept.
  Past either, stored memories are forgotten in this order: strangers that have not given
  us an entry since start-up, least recently saved first; then the others, least recently
  useful first. Never a followed peer's (hop 1) for a stranger's, nor a connected peer's.
* Memory that did not change is not written again. After a session that gave us no entry,
  a stranger's memory (one we do not follow) is written only while a budget shared by all
  of them, ``SAVE_BUDGET_BYTES`` per ``SAVE_BUDGET_S``, lasts; past it, the stored copy is
  forgotten (one event an hour says so).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.core.clocks import PeerMemory, decode_peer_memory, encode_peer_memory
from meshnode.core.events import PeerMemoryForgotten, PeerMemoryNotKept
from meshnode.errors import DecodeError, StoreError
from meshnode.types import FeedId

if TYPE_CHECKING:
    from collections.abc import Container

    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.core.events import Event
    from meshnode.types import PeerId

__all__ = [
    "MAX_PEER_MEMORY_BYTES",
    "MAX_REMEMBERED_PEERS",
    "SAVE_BUDGET_BYTES",
    "SAVE_BUDGET_S",
    "MemoryKeeper",
]

# One peer's memory is ~170 B per feed both sides name: 4 MiB holds ~24,000 shared feeds,
# and stays far below the flat-file store's 16 MiB record limit.
MAX_PEER_MEMORY_BYTES = 4 << 20
# Peers remembered at once: far more than the boxes one box meets, and the store's index
# keeps one line per peer.
MAX_REMEMBERED_PEERS = 1024
# Writes of strangers' memory, which only ever add dead bytes to the log until `meshnode
# compact`: 8 MiB per hour is 16 reconnects an hour of a peer sharing 3,000 feeds.
SAVE_BUDGET_BYTES = 8 << 20
SAVE_BUDGET_S = 3600.0
_DIGEST_BYTES = 16
_FOLLOWED_HOPS = 1


@dataclass(slots=True, kw_only=True, eq=False)
class MemoryKeeper:
    """Loads and saves the memory of every peer of a node, within the limits above."""

    host: Host
    config: ReplicationConfig
    events: list[Event]  # the replicator's events (shared, not copied)
    loaded: dict[PeerId, bytes] = field(default_factory=dict)  # live sessions: digest as stored
    useful: dict[PeerId, int] = field(default_factory=dict)  # peer -> tick of its latest entry
    tick: int = 0
    budget_bytes: float = 0.0  # strangers' writes left (filled on first use)
    budget_at: float | None = None  # when budget_bytes was last brought up to date
    quiet_until: float = float("-inf")  # the budget's event is told once per SAVE_BUDGET_S

    @property
    def per_peer_bytes(self) -> int:
        """Largest memory of one peer that is kept."""
        return min(MAX_PEER_MEMORY_BYTES, self.config.peer_memory_cap_bytes)

    # -- loading ------------------------------------------------------------------------

    def load(self, peer: PeerId) -> PeerMemory:
        """What we remember of ``peer``; a fresh memory when nothing usable is stored."""
        data = self.host.store.peer_state(peer)
        self.loaded.pop(peer, None)
        if data is None:
            return PeerMemory()
        if len(data) > self.per_peer_bytes:
            limit = self.per_peer_bytes
            self._not_kept(peer, f"stored memory of {len(data)} bytes, over the limit of {limit}")
            self._forget(peer)
            return PeerMemory()
        try:
            memory = decode_peer_memory(data)
        except DecodeError as exc:
            self.events.append(PeerMemoryForgotten(peer=peer, reason=str(exc)))
            return PeerMemory()
        if len(memory.unknown) > self.config.max_unknown_feeds:
            names = len(memory.unknown)
            why = f"stored memory names {names} feeds this node does not keep"
            self._not_kept(peer, f"{why} (node.max_unknown_feeds)")
            self._forget(peer)
            return PeerMemory()
        self.loaded[peer] = _digest(data)
        return memory

    # -- saving -------------------------------------------------------------------------

    def entry_added(self, s: Session) -> None:
        """``s``'s peer gave us an entry we stored: it is useful, as of now."""
        s.added += 1
        self.tick += 1
        self.useful[s.peer] = self.tick

    def save(self, s: Session, now: float, live: Container[PeerId]) -> None:
        """Keep ``s``'s memory if it may be kept (the session is ending or the node closing)."""
        stored = self.loaded.pop(s.peer, None)
        if not s.memory.epoch:
            return  # the peer never said who it is: nothing worth remembering
        if not self.config.peer_memory_cap_bytes:
            self._forget(s.peer)  # the operator keeps no memory of peers
            return
        data = encode_peer_memory(s.memory)
        if stored is not None and stored == _digest(data):
            return  # unchanged since it was loaded
        if len(data) > self.per_peer_bytes:
            self._not_kept(s.peer, f"{len(data)} bytes, over the limit of {self.per_peer_bytes}")
            self._forget(s.peer)
            return
        if not self._within_budget(s, len(data), now):
            self._forget(s.peer)
            return
        try:
            self.host.store.set_peer_state(s.peer, data)
        except StoreError as exc:
            self._not_kept(s.peer, f"the store refused it: {exc}")
            return
        self._evict(live)

    def discard(self, s: Session) -> None:
        """Forget ``s``'s memory, stored copy and all (its peer broke the rules)."""
        self.loaded.pop(s.peer, None)
        self._forget(s.peer)

    def _within_budget(self, s: Session, size: int, now: float) -> bool:
        """True when ``s``'s memory may be written: always after a session that gave us
        entries, or with a peer we follow; otherwise while the budget lasts (it is charged)."""
        if s.added or self.followed(s.peer):
            return True
        if self.budget_at is None:
            self.budget_bytes = float(SAVE_BUDGET_BYTES)  # full at start-up
        else:
            refill = max(0.0, now - self.budget_at) * SAVE_BUDGET_BYTES / SAVE_BUDGET_S
            self.budget_bytes = min(float(SAVE_BUDGET_BYTES), self.budget_bytes + refill)
        self.budget_at = now
        if size <= self.budget_bytes:
            self.budget_bytes -= size
            return True
        if now >= self.quiet_until:
            self.quiet_until = now + SAVE_BUDGET_S
            budget = f"{SAVE_BUDGET_BYTES >> 20} MiB of writes an hour"
            why = f"strangers' memory has used its {budget}; more are not told this hour"
            self._not_kept(s.peer, why)
        return False

    def followed(self, peer: PeerId) -> bool:
        """True for a peer whose feed we follow."""
        scope = self.host.scope(FeedId(peer))
        return scope is not None and scope.hops <= _FOLLOWED_HOPS

    def _evict(self, live: Container[PeerId]) -> None:
        """Forget stored memories past the count and byte caps, strangers first."""
        stored = self.host.store.peers()
        if len(self.useful) > 2 * MAX_REMEMBERED_PEERS:  # peers met but not kept
            self.useful = {p: t for p, t in self.useful.items() if p in stored or p in live}
        count, total = len(stored), sum(stored.values())
        cap = self.config.peer_memory_cap_bytes
        if count <= MAX_REMEMBERED_PEERS and total <= cap:
            return
        order = sorted(
            (self.useful.get(peer, -1), i, peer)
            for i, peer in enumerate(stored)
            if peer not in live and not self.followed(peer)
        )
        for _, _, peer in order:
            if count <= MAX_REMEMBERED_PEERS and total <= cap:
                return
            self._forget(peer)
            count -= 1
            total -= stored[peer]

    def _forget(self, peer: PeerId) -> None:
        self.useful.pop(peer, None)
        try:
            self.host.store.forget_peer_state(peer)
        except StoreError as exc:
            self._not_kept(peer, f"the store could not forget it: {exc}")

    def _not_kept(self, peer: PeerId, reason: str) -> None:
        self.events.append(PeerMemoryNotKept(peer=peer, reason=reason))


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).digest()

"""Who is replicated: hop distance in the follow graph, blocks, and how much of each feed to keep.

Hop 0 is our own feed, hop 1 the feeds we follow, hop 2 the feeds they follow, and so on.
A feed we block is never wanted, whatever its distance. Feeds within ``full_hops`` are
kept whole; feeds up to ``max_hops`` keep their last ``partial_entries`` entries; feeds
further away are not stored. Contact entries change the graph as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.content import Contact, ContactAction

if TYPE_CHECKING:
    from meshnode.types import FeedId, Seq

__all__ = ["Policy", "PolicyConfig", "Scope", "SocialGraph"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """Replication scope and caps; 0 bytes means no cap."""

    max_hops: int = 2
    full_hops: int = 1
    partial_entries: int = 100
    feed_cap_bytes: int = 0
    global_cap_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Scope:
    """How much of a feed the policy keeps: ``max_entries`` None means the whole feed."""

    hops: int
    max_entries: int | None


class SocialGraph:
    """Follow and block edges from contact entries; per (author, target) the latest seq wins."""

    def __init__(self) -> None:
        self._latest: dict[tuple[FeedId, FeedId], tuple[Seq, ContactAction]] = {}
        self.follows: dict[FeedId, set[FeedId]] = {}
        self.blocks: dict[FeedId, set[FeedId]] = {}

    def apply(self, author: FeedId, seq: Seq, contact: Contact) -> bool:
        """Record one contact entry; True when an edge changed."""
        key = (author, contact.target)
        old = self._latest.get(key)
        if old is not None and old[0] >= seq:
            return False
        self._latest[key] = (seq, contact.action)
        follows = self.follows.setdefault(author, set())
        blocks = self.blocks.setdefault(author, set())
        before = (contact.target in follows, contact.target in blocks)
        action = contact.action
        if action == ContactAction.FOLLOW:
            follows.add(contact.target)
            blocks.discard(contact.target)
        elif action == ContactAction.UNFOLLOW:
            follows.discard(contact.target)
        elif action == ContactAction.BLOCK:
            blocks.add(contact.target)
            follows.discard(contact.target)
        else:
            blocks.discard(contact.target)
        return before != (contact.target in follows, contact.target in blocks)

    def would_change(self, author: FeedId, contact: Contact) -> bool:
        """False when ``contact`` from ``author`` would restate what the graph already says."""
        follows = contact.target in self.follows.get(author, ())
        blocks = contact.target in self.blocks.get(author, ())
        action = contact.action
        if action == ContactAction.FOLLOW:
            return not follows or blocks
        if action == ContactAction.UNFOLLOW:
            return follows
        if action == ContactAction.BLOCK:
            return not blocks
        return blocks

    def distances(self, me: FeedId, max_hops: int) -> dict[FeedId, int]:
        """Breadth-first hop count from ``me``, skipping feeds ``me`` blocks."""
        blocked = self.blocks.get(me, set())
        hops = {me: 0}
        frontier = [me]
        for distance in range(1, max_hops + 1):
            nxt = []
            for feed in frontier:
                for target in sorted(self.follows.get(feed, ())):
                    if target not in hops and target not in blocked:
                        hops[target] = distance
                        nxt.append(target)
            frontier = nxt
        return hops


class Policy:
    """Answers "do we want this feed, and how much of it" from the graph and the config."""

    def __init__(self, me: FeedId, config: PolicyConfig) -> None:
        self.me = me
        self.config = config
        self.graph = SocialGraph()
        self._hops: dict[FeedId, int] | None = None

    def apply_contact(self, author: FeedId, seq: Seq, contact: Contact) -> bool:
        """Feed a contact entry to the graph; True when who we replicate may have changed."""
        changed = self.graph.apply(author, seq, contact)
        if changed:
            self._hops = None
        return changed

    def hops(self) -> dict[FeedId, int]:
        """Hop distance of every wanted feed."""
        if self._hops is None:
            self._hops = self.graph.distances(self.me, self.config.max_hops)
        return self._hops

    def scope(self, feed: FeedId) -> Scope | None:
        """How much of ``feed`` to keep, or None when it is not stored at all."""
        hops = self.hops().get(feed)
        if hops is None:
            return None
        if hops <= self.config.full_hops:
            return Scope(hops, None)
        return Scope(hops, self.config.partial_entries)

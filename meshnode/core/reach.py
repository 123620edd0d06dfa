"""How far a feed has travelled: the highest seq each known peer is known to hold.

Read from what replication remembers (core/ebt/keeper.py): a connected peer's notes this
session, plus, over a reliable link, what we pushed it since (a stream delivers in order
or fails); a peer not connected, from its stored memory (its last notes) and, for our own
feed, what its last session since start had delivered (OwnReach). It answers
"has my message reached a box that serves its recipient": reached when that box's seq
of the author's feed is at least the message's. Radio neighbours are left out: the shared
channel names them by unsigned short ids, not identities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.core.clocks import decode_peer_memory
from meshnode.errors import DecodeError, StoreError
from meshnode.types import FeedId

if TYPE_CHECKING:
    from meshnode.core.ebt.session import Session
    from meshnode.core.replication import Replicator
    from meshnode.core.store import Store

__all__ = ["MAX_REACHED_PEERS", "OwnReach", "peers_reach"]

# Peers whose share of our own feed is remembered after their link closed: as many as
# replication remembers peers (core/ebt/keeper.py); the least recently seen go first.
MAX_REACHED_PEERS = 1024


class OwnReach:
    """How much of our own feed each peer held when its reliable link closed, since start.

    A peer's stored memory keeps only its last notes, which a peer does not repeat for
    every entry pushed to it; what a reliable link delivered is known better here.
    """

    def __init__(self, limit: int = MAX_REACHED_PEERS) -> None:
        self.limit = limit
        self._seq: dict[FeedId, int] = {}

    def session_ended(self, s: Session, own: FeedId) -> None:
        """Remember what ``s``'s peer is known to hold of ``own`` as its session ends."""
        seq = _session_seq(s, own)
        if seq <= 0:
            return
        peer = FeedId(s.peer)
        seq = max(seq, self._seq.pop(peer, 0))
        self._seq[peer] = seq
        while len(self._seq) > self.limit:
            del self._seq[next(iter(self._seq))]

    def get(self) -> dict[FeedId, int]:
        """Peer -> seq of our own feed, as remembered."""
        return dict(self._seq)


def _session_seq(s: Session, feed: FeedId) -> int:
    """What a live session's peer is known to hold of ``feed``: its notes, and over a
    reliable link what we pushed it since."""
    seq = 0
    remote = s.memory.remote.get(feed)
    if remote is not None and remote.replicating:
        seq = remote.latest
    if s.reliable:  # what we pushed it (its notes do not repeat every entry it got)
        seq = max(seq, s.flow.assumed.get(feed, 0), s.flow.pushed_now.get(feed, 0))
    return seq


def peers_reach(
    replicator: Replicator, store: Store, feed: FeedId, known: dict[FeedId, int]
) -> dict[FeedId, int]:
    """Peer identity -> highest seq of ``feed`` it is known to hold (those with none left
    out), starting from ``known`` (OwnReach's, for our own feed)."""
    out = dict(known)
    live = replicator.sessions
    for peer, s in live.items():
        seq = _session_seq(s, feed)
        if seq > 0:
            out[FeedId(peer)] = max(seq, out.get(FeedId(peer), 0))
    try:
        stored = [p for p in store.peers() if p not in live]
    except StoreError:
        return out
    for peer in stored:
        try:
            data = store.peer_state(peer)
            memory = decode_peer_memory(data) if data else None
        except (DecodeError, StoreError):
            continue
        remote = memory.remote.get(feed) if memory is not None else None
        if remote is not None and remote.replicating and remote.latest > 0:
            out[FeedId(peer)] = max(remote.latest, out.get(FeedId(peer), 0))
    return out

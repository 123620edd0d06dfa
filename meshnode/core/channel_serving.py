"""What a node of a shared channel owes its neighbours: entries asked for, in turn by feed.

A WANT schedules the feed from the seq asked, with a credit of ``entries_per_want``. An
entry sent lately is remembered: a WANT made before it arrived does not send it again
(sent within ``in_flight_s``), nor does one asking again for an entry lost send again
those sent after it (the asker keeps them until the gap fills).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.channel import encode_entry_message
from meshnode.codec.message import decode_entry, encode_short_entry
from meshnode.core.events import EntryNotServed
from meshnode.core.inbox import is_private
from meshnode.errors import StoreCorrupt
from meshnode.types import FeedId, Seq

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.core.channel_config import ChannelConfig
    from meshnode.core.events import EventQueue
    from meshnode.core.node import Node
    from meshnode.types import Rng

__all__ = ["MAX_PENDING", "Serving"]

MAX_PENDING = 16  # out-of-order entries kept per feed (by the asker)
_RECENT_SENT = 2 * MAX_PENDING  # entries sent lately remembered per feed
_OWN_LOOK_AHEAD = 8  # entries of our own feed read to find a private one to send first


@dataclass(slots=True)
class _Serve:
    next_seq: int
    credit: int
    full_first: bool
    skip: frozenset[int] = frozenset()  # sent after the one asked again: it holds them


class Serving:
    """The entries a channel's node is to send: by feed, in turn, none twice in flight."""

    def __init__(
        self,
        node: Node,
        *,
        config: ChannelConfig,
        rng: Rng,
        events: EventQueue,
        tag: Callable[[FeedId], bytes],
    ) -> None:
        self.node = node
        self.config = config
        self.rng = rng
        self.src = bytes(node.feed_id[:4])
        self._events = events
        self._tag = tag
        # Set by the shell: how much longer than ``in_flight_s`` a message may take to
        # arrive now (a lossy cable mends its messages in parts).
        self.extra_in_flight_s = 0.0
        self.queue: dict[FeedId, _Serve] = {}
        self.at: float | None = None  # when the next entry may go (after a random backoff)
        # Entries we sent lately, by feed: seq -> when, last and first.
        self._recent: dict[FeedId, dict[int, float]] = {}
        self._first: dict[FeedId, dict[int, float]] = {}

    def __len__(self) -> int:
        return len(self.queue)

    def due(self, now: float) -> bool:
        """True if an entry is owed and its backoff is over."""
        return bool(self.queue) and self.at is not None and self.at <= now

    def schedule(self, feed: FeedId, seq: int, *, full_first: bool, now: float) -> None:
        """Someone wants ``feed`` from ``seq``: serve it (less what is on its way)."""
        recent = self.recent_sent(feed, now)
        in_flight = now - self.config.in_flight_s - self.extra_in_flight_s
        while recent.get(seq, -math.inf) >= in_flight:  # on its way: asked before it came
            seq += 1
            full_first = False
        # Those sent after its first sending wait at the asker, whenever it was sent again.
        lost_at = self._first.get(feed, {}).get(seq) if seq in recent else None
        skip = frozenset(
            q
            for q, at in recent.items()
            if lost_at is not None and seq < q <= seq + MAX_PENDING and at > lost_at
        )
        credit = self.config.entries_per_want
        current = self.queue.get(feed)
        if current is None or seq < current.next_seq:
            self.queue[feed] = _Serve(seq, credit, full_first, skip)
        else:
            current.credit = max(current.credit, credit)
        if self.at is None:
            self.at = now + self.rng.uniform(0, self.config.backoff_s)

    def overheard(self, feed: FeedId, seq: int) -> bool:
        """Someone else sent entry ``seq`` of ``feed``: True if we meant to send it next."""
        served = self.queue.get(feed)
        if served is None or served.next_seq != seq:
            return False
        served.next_seq += 1  # do not send it again
        return True

    def recent_sent(self, feed: FeedId, now: float) -> dict[int, float]:
        """The entries of ``feed`` we sent lately (the last _RECENT_SENT): seq -> when."""
        recent = self._recent.setdefault(feed, {})
        since = now - self.config.want_max_s
        for seq in [s for s, at in recent.items() if at < since]:
            del recent[seq]
        while len(recent) > _RECENT_SENT:
            del recent[min(recent, key=recent.__getitem__)]
        first = self._first.setdefault(feed, {})
        for seq in [s for s in first if s not in recent]:
            del first[seq]
        return recent

    def _next_feed(self) -> FeedId:
        """A feed whose owed run holds a private message goes first (the box cannot tell
        whose it is, and someone away waits for it: core/mailbox.py); else in turn."""
        for feed, served in self.queue.items():
            owed = range(served.next_seq, served.next_seq + served.credit)
            if feed != self.node.feed_id:
                if any(s in owed for s in self.node.mailbox.private_seqs(feed)):
                    return feed
            elif any(self._private_at(feed, s) for s in owed[:_OWN_LOOK_AHEAD]):
                return feed  # ours is not in the mailbox: its next few entries are looked at
        return next(iter(self.queue))

    def _private_at(self, feed: FeedId, seq: int) -> bool:
        try:
            return is_private(self.node.store.get(feed, Seq(seq)))
        except (KeyError, StoreCorrupt):
            return False

    def next_entry(self, now: float) -> bytes | None:
        """The next entry message to serve, taking feeds in turn."""
        store = self.node.store
        while self.queue:
            feed = self._next_feed()
            served = self.queue.pop(feed)
            head = store.head(feed)
            if head is None or served.next_seq > head.latest or served.credit <= 0:
                continue
            seq = max(served.next_seq, head.first)
            try:
                raw = store.get(feed, Seq(seq))
            except StoreCorrupt as exc:
                self._events.push(EntryNotServed(reason=str(exc)))
                continue
            full = served.full_first or (seq == head.first and seq > 1 and served.full_first)
            body = raw if full else encode_short_entry(decode_entry(raw, max_content_bytes=1 << 20))
            after = seq + 1
            while after in served.skip:
                after += 1
            if after <= head.latest and served.credit > 1:
                rest = _Serve(after, served.credit - 1, False, served.skip)
                self.queue[feed] = rest
            if not self.queue:
                self.at = None
            self.recent_sent(feed, now)[seq] = now
            self._first[feed].setdefault(seq, now)
            return encode_entry_message(self.src, self._tag(feed), seq, body)
        self.at = None
        return None

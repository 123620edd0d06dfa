"""What a drive is given first: private messages, before every public entry.

A box cannot tell whom a private message is for (core/mailbox.py), and it is what someone
away from the box is waiting for, so when a drive has room for only part of what it
lacks, private entries go first. A drive carries each feed as one run without gaps, so a
private entry takes along the entries of its feed before it (those the drive lacks):
first every planned run up to its feed's latest private entry, then the rest of each run,
both in the plan's order (usb/merge.py plan_writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.core.inbox import is_private
from meshnode.errors import StoreCorrupt
from meshnode.types import Seq

if TYPE_CHECKING:
    from meshnode.core.node import Node
    from meshnode.types import FeedId

__all__ = ["OWN_SCAN_ENTRIES", "latest_private", "private_first"]

Run = tuple["FeedId", int, int]
# Our own feed is not in the mailbox index (it is never evicted): its newest entries are
# looked at instead, this many at most (a person's private messages are recent ones).
OWN_SCAN_ENTRIES = 1000


def latest_private(node: Node, feed: FeedId, first: int, latest: int) -> int | None:
    """The latest private entry of ``feed`` in first..latest, if any."""
    if feed != node.feed_id:
        seqs = [s for s in node.mailbox.private_seqs(feed) if first <= s <= latest]
        return max(seqs) if seqs else None
    for seq in range(latest, max(first, latest - OWN_SCAN_ENTRIES + 1) - 1, -1):
        try:
            if is_private(node.store.get(feed, Seq(seq))):
                return seq
        except (KeyError, StoreCorrupt):
            return None
    return None


def private_first(node: Node, plan: list[Run]) -> list[Run]:
    """``plan``'s runs cut so that every private entry comes before any other entry that
    is not needed to reach it."""
    head: list[Run] = []
    tail: list[Run] = []
    for feed, first, latest in plan:
        cut = latest_private(node, feed, first, latest)
        if cut is None:
            tail.append((feed, first, latest))
            continue
        head.append((feed, first, cut))
        if cut < latest:
            tail.append((feed, cut + 1, latest))
    return head + tail

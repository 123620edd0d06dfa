"""Keeps the page's indexes up to date beside the daemon's work: the thread index
(core/threads.py) and those added to ``also`` (the inbox's, web/inbox.py).

Each entry the node stores reaches the index as the node decoded it (an entry listener:
a content-type check, and for a reply its parent's id, so a LAN sync of thousands of
entries a second pays next to nothing). What the store held before the page started is
read once in the background, a few hundred entries per turn of the event loop, so the
box keeps answering meanwhile; ``ready`` is set when that read is done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from meshnode.core.threads import ThreadIndex
from meshnode.core.timeline import read_entry

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.codec.message import Entry
    from meshnode.core.node import Node

__all__ = ["ThreadKeeper"]

log = logging.getLogger(__name__)

_CHUNK = 100  # stored entries read between two turns of the event loop (about 2 ms)


class ThreadKeeper:
    """The index, fed by the node as it stores entries and by one read of what it held."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.index = ThreadIndex()
        self.also: list[Callable[[Entry], None]] = []  # more indexes, each fed every entry
        self.ready = asyncio.Event()  # set once every kept feed has been read

    def entry_stored(self, entry: Entry) -> None:
        """Node entry listener."""
        self.index.add(entry)
        for add in self.also:
            add(entry)

    async def read_store(self) -> None:
        """Index every entry the store holds of the feeds the box keeps, then set ready."""
        done = 0
        for feed in list(self.node.replicated()):
            head = self.node.store.head(feed)
            if head is None:
                continue
            for seq in range(int(head.first), int(head.latest) + 1):
                entry = read_entry(self.node, feed, seq)
                if entry is not None:  # evicted or damaged: nothing to index
                    self.entry_stored(entry)
                done += 1
                if done % _CHUNK == 0:
                    await asyncio.sleep(0)
        self.ready.set()
        log.debug("thread index: %d posts and replies", len(self.index))

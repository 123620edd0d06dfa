"""Keeps the page's thread index (core/threads.py) up to date beside the daemon's work.

At start every kept feed is read once, a few hundred entries per loop turn so the box
keeps answering; after that, each entry the node stores is queued by its feed and seq
(the node's append listener must stay cheap: a LAN sync stores thousands a second) and
read here. When more than MAX_PENDING wait, the queue is dropped and the feeds are read
again from the start, so memory stays bounded and nothing is missed for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from meshnode.core.threads import ThreadIndex
from meshnode.core.timeline import read_entry

if TYPE_CHECKING:
    from meshnode.core.node import Node
    from meshnode.types import FeedId, PeerId

__all__ = ["MAX_PENDING", "ThreadKeeper"]

log = logging.getLogger(__name__)

MAX_PENDING = 20_000  # stored entries waiting to be indexed; more: read the feeds again
_CHUNK = 500  # entries read between two turns of the event loop


class ThreadKeeper:
    """The index, the entries waiting for it, and the task that reads them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.index = ThreadIndex()
        self.ready = asyncio.Event()  # set once every kept feed has been read
        self._pending: deque[tuple[FeedId, int]] = deque()
        self._rescan = True
        self._wake = asyncio.Event()

    def entry_stored(self, feed: FeedId, seq: int, source: PeerId | None) -> None:
        """Node append listener: queue the entry (or, past MAX_PENDING, a full reread)."""
        del source
        if self._rescan:
            return  # the reread to come will find it
        if len(self._pending) >= MAX_PENDING:
            self._pending.clear()
            self._rescan = True
        else:
            self._pending.append((feed, seq))
        self._wake.set()

    async def run(self) -> None:
        """Index until cancelled."""
        while True:
            if self._rescan:
                self._rescan = False
                self._pending.clear()
                await self._read_all()
                self.ready.set()
            while self._pending:
                for _ in range(min(_CHUNK, len(self._pending))):
                    self._add(*self._pending.popleft())
                await asyncio.sleep(0)
            if not self._rescan and not self._pending:
                self._wake.clear()
                await self._wake.wait()

    async def _read_all(self) -> None:
        done = 0
        for feed in list(self.node.replicated()):
            head = self.node.store.head(feed)
            if head is None:
                continue
            for seq in range(int(head.first), int(head.latest) + 1):
                self._add(feed, seq)
                done += 1
                if done % _CHUNK == 0:
                    await asyncio.sleep(0)
        log.debug("thread index: %d posts and replies", len(self.index))

    def _add(self, feed: FeedId, seq: int) -> None:
        entry = read_entry(self.node, feed, seq)
        if entry is not None:  # evicted or damaged: nothing to thread
            self.index.add(entry)

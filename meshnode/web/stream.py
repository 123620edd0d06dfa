"""Live updates for every open page: one fan-out of server-sent events for all phones.

The node calls ``entry_stored`` for each entry it stores (a LAN sync stores thousands a
second), so the hub only marks feeds as changed and, once per loop turn at most, encodes
one event naming them and hands those same bytes to every stream. A phone that cannot
keep up loses its stream (its page reconnects and reloads), never the box its memory.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from meshnode.secure.identity import format_feed_id

if TYPE_CHECKING:
    from meshnode.types import FeedId, PeerId

__all__ = ["MAX_STREAMS", "STREAM_QUEUE_EVENTS", "Hub", "StreamsFull"]

MAX_STREAMS = 256  # open event streams at once; more are refused with 503
STREAM_QUEUE_EVENTS = 64  # events waiting for one slow phone before its stream is closed
MAX_FEEDS_PER_EVENT = 100  # more changed feeds than this in one turn: "reload" instead
KEEPALIVE_S = 25.0  # a comment line this often keeps proxies and phones from closing it


class StreamsFull(Exception):
    """MAX_STREAMS streams are open already."""


class Hub:
    """The fan-out: changed feeds in, one encoded event out to every stream."""

    def __init__(self) -> None:
        self._streams: set[asyncio.Queue[bytes | None]] = set()
        self._changed: dict[FeedId, int] = {}
        self._flush: asyncio.Handle | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def entry_stored(self, feed: FeedId, seq: int, source: PeerId | None) -> None:
        """Node append listener: remember the feed; flush once this loop turn is done."""
        del source
        if not self._streams:
            return
        self._changed[feed] = max(seq, self._changed.get(feed, 0))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Encode the changes once and queue them on every stream."""
        self._flush = None
        changed, self._changed = self._changed, {}
        if not changed:
            return
        data: dict[str, object]
        if len(changed) > MAX_FEEDS_PER_EVENT:
            data = {"reload": True}
        else:
            data = {"feeds": {format_feed_id(f): s for f, s in changed.items()}}
        event = b"event: entries\ndata: " + json.dumps(data).encode() + b"\n\n"
        for queue in list(self._streams):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(queue)

    def open(self) -> asyncio.Queue[bytes | None]:
        """A new stream's queue; StreamsFull when there are MAX_STREAMS already."""
        if len(self._streams) >= MAX_STREAMS:
            raise StreamsFull
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(STREAM_QUEUE_EVENTS)
        self._streams.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[bytes | None]) -> None:
        """Forget a stream (its client went away)."""
        self._streams.discard(queue)

    def close_all(self) -> None:
        """End every stream (the daemon stops)."""
        for queue in list(self._streams):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._streams.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)  # tells its writer to end the response

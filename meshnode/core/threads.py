"""Threads: which entries answer which, so a page can show a post with all its replies.

A REPLY names its parent by message id, and the store finds entries by feed and seq only,
so this index remembers where each post and reply lives and which replies answer it. It
is bounded: it holds the MAX_INDEXED posts and replies added last, forgetting the oldest
first, and a thread is at most MAX_THREAD entries found at most MAX_DEPTH parents up, so
a stranger's chain of replies costs a box a fixed amount of memory and work.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from meshnode.codec.content import decode_reply
from meshnode.codec.message import ContentType
from meshnode.core.timeline import read_entry
from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from meshnode.types import FeedId, MsgId, Seq

if TYPE_CHECKING:
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node

__all__ = ["MAX_DEPTH", "MAX_INDEXED", "MAX_THREAD", "ThreadIndex"]

MAX_INDEXED = 50_000  # posts and replies remembered (about 10 MB at most)
MAX_THREAD = 200  # entries shown in one thread at most
MAX_DEPTH = 64  # parents followed up from an entry to find its thread's first post
_PLAIN_LIMIT = 1 << 16
_THREADED = (ContentType.POST, ContentType.REPLY)


class ThreadIndex:
    """Where posts and replies live, and the replies of each."""

    def __init__(self, limit: int = MAX_INDEXED) -> None:
        self.limit = limit
        # message id -> (author, seq, parent id or None), oldest added first
        self._where: OrderedDict[MsgId, tuple[FeedId, Seq, MsgId | None]] = OrderedDict()
        self._replies: dict[MsgId, list[MsgId]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def add(self, entry: Entry) -> None:
        """Remember ``entry`` if it is a post or a reply; anything else is ignored."""
        if entry.content_type not in _THREADED or entry.id in self._where:
            return
        parent: MsgId | None = None
        if entry.content_type == ContentType.REPLY:
            try:
                parent = decode_reply(entry.plain_content(_PLAIN_LIMIT)).parent
            except (DecodeError, UnicodeDecodeError):
                return  # a reply that does not decode answers nothing
            self._replies.setdefault(parent, []).append(entry.id)
        self._where[entry.id] = (entry.author, entry.seq, parent)
        while len(self._where) > self.limit:
            self._forget()

    def _forget(self) -> None:
        msg_id, (_, _, parent) = self._where.popitem(last=False)
        if parent is None:
            return
        siblings = self._replies.get(parent, [])
        if msg_id in siblings:
            siblings.remove(msg_id)
        if not siblings:
            self._replies.pop(parent, None)

    def locate(self, msg_id: MsgId) -> tuple[FeedId, Seq] | None:
        """The author and seq of an indexed entry."""
        found = self._where.get(msg_id)
        return None if found is None else (found[0], found[1])

    def reply_count(self, msg_id: MsgId) -> int:
        """How many indexed replies answer ``msg_id`` directly."""
        return len(self._replies.get(msg_id, ()))

    def root(self, msg_id: MsgId) -> MsgId:
        """The first post of ``msg_id``'s thread, as far up as the index (and MAX_DEPTH) go."""
        seen = {msg_id}
        for _ in range(MAX_DEPTH):
            found = self._where.get(msg_id)
            if found is None or found[2] is None or found[2] not in self._where:
                return msg_id
            msg_id = found[2]
            if msg_id in seen:
                return msg_id  # ids are hashes, so a loop cannot happen; stop if one does
            seen.add(msg_id)
        return msg_id

    def thread(self, node: Node, msg_id: MsgId) -> list[Entry]:
        """The thread ``msg_id`` belongs to: its first post, then replies oldest first."""
        root = self.root(msg_id)
        order: list[MsgId] = [root]
        seen = {root}
        i = 0
        while i < len(order) and len(order) < MAX_THREAD:
            for child in self._replies.get(order[i], ()):
                if child not in seen and len(order) < MAX_THREAD:
                    seen.add(child)
                    order.append(child)
            i += 1
        entries = [e for e in (self._read(node, m) for m in order) if e is not None]
        first, rest = entries[:1], entries[1:]
        if first and first[0].id != root:
            first, rest = [], entries  # the first post itself is gone (evicted or damaged)
        rest.sort(key=lambda e: (e.timestamp_ms, bytes(e.author), e.seq))
        return first + rest

    def _read(self, node: Node, msg_id: MsgId) -> Entry | None:
        found = self._where.get(msg_id)
        if found is None:
            return None
        entry = read_entry(node, found[0], found[1])  # None: evicted or damaged since
        return entry if entry is not None and entry.id == msg_id else None

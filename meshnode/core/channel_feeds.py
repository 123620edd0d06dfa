"""The feeds a channel's node replicates, by the short tag that names them on the air,
and the entries of them that channel messages carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.codec.channel import channel_tag
from meshnode.codec.message import decode_entry, decode_short_entry, is_short_form
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.types import MsgId, Seq

if TYPE_CHECKING:
    from meshnode.codec.channel import EntryMessage
    from meshnode.codec.message import Entry
    from meshnode.core.node import Node
    from meshnode.core.policy import Scope
    from meshnode.types import FeedId

__all__ = ["ChannelFeeds"]


class ChannelFeeds:
    """The node's replicated feeds and their channel tags, rebuilt when the policy changes."""

    __slots__ = ("_replicated", "_tags", "node")

    def __init__(self, node: Node) -> None:
        self.node = node
        self._tags: dict[bytes, list[FeedId]] = {}
        self._replicated: dict[FeedId, Scope] | None = None

    def replicated(self) -> dict[FeedId, Scope]:
        """The feeds the node replicates, with their scope."""
        replicated = self.node.replicated()
        if self._replicated is not replicated:  # the policy changed: rebuild the tags
            tags: dict[bytes, list[FeedId]] = {}
            for feed in replicated:
                tags.setdefault(self.tag(feed), []).append(feed)
            self._tags, self._replicated = tags, replicated
        return replicated

    def feeds(self, tag: bytes) -> list[FeedId]:
        """The replicated feeds that ``tag`` may name (tags are short: more than one may)."""
        self.replicated()
        return self._tags.get(tag, [])

    def held(self) -> dict[FeedId, int]:
        """The latest seq held of every replicated feed."""
        store = self.node.store
        return {f: store.latest_seq(f) for f in self.replicated()}

    def tag(self, feed: FeedId) -> bytes:
        """The tag of ``feed`` on this node's network."""
        return channel_tag(feed, self.node.network_key)

    def entry(self, feed: FeedId, message: EntryMessage, latest: int) -> Entry | None:
        """The entry ``message`` carries of ``feed`` (we hold up to ``latest``), if valid."""
        limit = self.node.max_content_bytes
        try:
            if not is_short_form(message.entry):
                entry = decode_entry(message.entry, max_content_bytes=limit)
                return entry if entry.author == feed and entry.seq == message.seq else None
            if message.seq != latest + 1:
                return None  # the short form needs the entry before it
            previous = self.node.store.entry_id(feed, Seq(latest)) if latest else None
            return decode_short_entry(
                message.entry,
                author=feed,
                seq=Seq(message.seq),
                previous=MsgId(previous) if previous else None,
                max_content_bytes=limit,
            )
        except (DecodeError, StoreCorrupt):
            return None

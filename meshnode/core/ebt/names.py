"""Feed names in a session: our table of indexes, the peer's, and refs between them.

Each side numbers the feeds it mentions. DEFINE names a run of our indexes by 32-bit tags
keyed by ``our epoch + peer`` (the peer matches each tag against feeds it knows); a feed
whose tag repeats goes by its key (DEFINE_KEY), and so does any index the peer cannot
match and asks for (WANT_KEY). A ref is an index plus a bit that says whose table it is in.

What a peer names is held within bounds it cannot move: the peer's table names only feeds
we keep or hold (one index each), and its names for other feeds are kept as bare tags, at
most ``max_unknown_feeds`` of them; a peer that names more is dropped (PeerOverLimit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.frame import (
    FrameType,
    decode_define,
    decode_define_key,
    decode_indexes,
    encode_define,
    encode_define_key,
    encode_indexes,
    make_ref,
    split_ref,
)
from meshnode.core.clocks import feed_tag
from meshnode.core.ebt.session import PeerOverLimit
from meshnode.types import FeedId

if TYPE_CHECKING:
    from meshnode.core.ebt.session import Host, Session

__all__ = ["FeedNames"]

_MAX_WANTED_KEYS = 10_000  # a peer naming endless unknown indexes gets no more answers
_KEY_PAIR_BYTES = 37  # in DEFINE_KEY: index varint (<= 5) + key (32)
_INDEX_BYTES = 5  # in WANT_KEY: an index varint is at most 5 bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedNames:
    """Names feeds to each peer and reads the peer's names, for every session of a node."""

    host: Host
    epoch: bytes
    retry_s: float  # how long a WANT_KEY waits for its answer
    max_unknown: int  # names of feeds we do not keep, per peer (ReplicationConfig)

    # -- our names ------------------------------------------------------------------------

    def ref(self, s: Session, feed: FeedId) -> int:
        """Shortest reference to ``feed``: the peer's index if it named it, else ours."""
        index = s.names.their_index.get(feed)
        if index is not None:
            return make_ref(index, True)
        if feed not in s.names.my_index:
            self.define(s, [feed])
        return make_ref(s.names.my_index[feed], False)

    def define(self, s: Session, feeds: list[FeedId]) -> None:
        """Add feeds to our table, named by tag (by key when a tag repeats)."""
        salt = self.epoch + s.peer
        taken = {feed_tag(f, salt) for f in s.memory.my_table}
        tagged: dict[int, FeedId] = {}
        by_key: list[FeedId] = []
        for feed in feeds:
            tag = feed_tag(feed, salt)
            if tag in taken or tag in tagged:
                by_key.append(feed)
            else:
                tagged[tag] = feed
        start = len(s.memory.my_table)
        order = sorted(tagged)
        for tag in order:
            _index(s, tagged[tag])
        limit = max(16, (s.link.mtu_bytes - 8) // 5)
        for i in range(0, len(order), limit):
            s.emit(encode_define(start + i, order[i : i + limit]))
        _send_keys(s, [(_index(s, f), bytes(f)) for f in by_key])

    def on_want_key(self, s: Session, frame: bytes) -> None:
        """The peer could not match some of our tags: name those feeds by key."""
        table = s.memory.my_table
        wanted = sorted({i for i in decode_indexes(frame) if i < len(table)})
        _send_keys(s, [(i, bytes(table[i])) for i in wanted])

    # -- their names ----------------------------------------------------------------------

    def feed_of(self, s: Session, ref: int, now: float) -> FeedId | None:
        """The feed ``ref`` names, or None (asking the peer for a key it never defined)."""
        index, theirs = split_ref(ref)
        if theirs:
            table = s.memory.my_table
            return table[index] if index < len(table) else None
        feed = s.memory.their_table.get(index)
        if feed is None and index not in s.memory.unknown:
            # Its DEFINE never arrived (a lost frame): ask for the key, again if need be.
            wanted_keys = s.names.wanted_keys
            retry_at = wanted_keys.get(index)
            if (retry_at is None and len(wanted_keys) < _MAX_WANTED_KEYS) or (
                retry_at is not None and retry_at <= now
            ):
                wanted_keys[index] = now + self.retry_s
                s.names.want_keys.append(index)
        return feed

    def on_define(self, s: Session, frame: bytes) -> None:
        """Match the peer's tags against the feeds we know; ask for keys where unclear."""
        start, tags = decode_define(frame)
        if s.names.tags_in is None:
            salt = s.memory.epoch + self.host.feed_id
            known = set(self.host.replicated()) | set(self.host.store.feeds())
            s.names.tags_in = {}
            for feed in known:
                s.names.tags_in.setdefault(feed_tag(feed, salt), []).append(feed)
        unclear = []
        for offset, tag in enumerate(tags):
            matches = s.names.tags_in.get(tag, [])
            if len(matches) == 1:
                _name(s, start + offset, matches[0])
            elif matches:
                unclear.append(start + offset)
            else:
                self._unknown(s, start + offset, tag)  # maybe a feed we start wanting later
        if unclear:
            s.emit(encode_indexes(FrameType.WANT_KEY, unclear))

    def on_define_key(self, s: Session, frame: bytes) -> None:
        """The peer named some of its indexes by key; a feed we neither keep nor hold is
        kept as a tag only, as if DEFINE had named it (its key would be 32 bytes of waste)."""
        for index, key in decode_define_key(frame):
            feed = FeedId(key)
            if self._known(s, feed):
                _name(s, index, feed)
            else:
                self._unknown(s, index, feed_tag(feed, s.memory.epoch + self.host.feed_id))

    def _known(self, s: Session, feed: FeedId) -> bool:
        """True for a feed we keep, hold, or have named to the peer ourselves."""
        return (
            feed in s.names.my_index
            or feed in self.host.replicated()
            or self.host.store.head(feed) is not None
        )

    def _unknown(self, s: Session, index: int, tag: int) -> None:
        """The peer's ``index`` names a feed we do not know, by ``tag``; within the cap."""
        unknown = s.memory.unknown
        if index not in unknown and len(unknown) >= self.max_unknown:
            raise PeerOverLimit(
                f"named more than {self.max_unknown} feeds this node does not keep"
                " (node.max_unknown_feeds)"
            )
        feed = s.memory.their_table.pop(index, None)
        if feed is not None and s.names.their_index.get(feed) == index:
            del s.names.their_index[feed]
        unknown[index] = tag

    def resolve_unknown(self, s: Session, feeds: list[FeedId]) -> None:
        """Match the peer's unmatched tags against feeds we have just started to want."""
        if not s.memory.unknown:
            return
        by_tag: dict[int, list[int]] = {}
        for index, tag in s.memory.unknown.items():
            by_tag.setdefault(tag, []).append(index)
        salt = s.memory.epoch + self.host.feed_id
        for feed in feeds:
            indexes = by_tag.get(feed_tag(feed, salt), [])
            if len(indexes) == 1 and feed not in s.names.their_index:
                _name(s, indexes[0], feed)

    @staticmethod
    def send_want_keys(s: Session) -> None:
        """Ask, in as few WANT_KEY frames as fit, for the keys ``feed_of`` found missing."""
        want_keys = s.names.want_keys
        per = max(1, (s.link.mtu_bytes - 1) // _INDEX_BYTES)
        for i in range(0, len(want_keys), per):
            s.emit(encode_indexes(FrameType.WANT_KEY, want_keys[i : i + per]))
        s.names.want_keys = []

    @staticmethod
    def unname(s: Session, ref: int) -> None:
        """Drop the peer's name behind ``ref`` (a tag match proved wrong) and ask for its key."""
        index, theirs = split_ref(ref)
        if not theirs and index in s.memory.their_table:
            s.names.their_index.pop(s.memory.their_table.pop(index), None)
            s.emit(encode_indexes(FrameType.WANT_KEY, [index]))

    @staticmethod
    def forget(s: Session) -> None:
        """Both tables start afresh (the memory behind them was dropped)."""
        s.names.my_index.clear()
        s.names.their_index.clear()
        s.names.tags_in = None
        s.names.wanted_keys.clear()


def _index(s: Session, feed: FeedId) -> int:
    index = s.names.my_index.get(feed)
    if index is None:
        index = s.names.my_index[feed] = len(s.memory.my_table)
        s.memory.my_table.append(feed)
    return index


def _name(s: Session, index: int, feed: FeedId) -> None:
    """The peer's ``index`` names ``feed``: one index per feed, one feed per index."""
    their_table, their_index = s.memory.their_table, s.names.their_index
    before = their_index.get(feed)
    if before is not None and before != index:
        their_table.pop(before, None)  # named again elsewhere: the old name goes
    replaced = their_table.get(index)
    if replaced is not None and replaced != feed and their_index.get(replaced) == index:
        del their_index[replaced]
    their_table[index] = feed
    their_index[feed] = index
    s.memory.unknown.pop(index, None)


def _send_keys(s: Session, pairs: list[tuple[int, bytes]]) -> None:
    per = max(1, (s.link.mtu_bytes - 1) // _KEY_PAIR_BYTES)
    for i in range(0, len(pairs), per):
        s.emit(encode_define_key(pairs[i : i + per]))

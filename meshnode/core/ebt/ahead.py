"""The entries of a run of received frames, decoded ahead of their turn (sans-IO).

A shell with spare cores checks the signatures of the entries that have arrived while the
node handles the frames before them, then hands each frame back with the entry decoded
here and its verdict (``Replicator.receive_frame``). A short-form entry needs the id of
the entry before it, which may still be waiting in the same run: ``EntriesAhead`` keeps
the id of the last entry it decoded per feed until the shell says nothing is in flight.

A guess may be wrong (that earlier entry is then rejected, or a DEFINE in the run names a
feed anew): at its turn the node uses the entry decoded here, and its verdict, only when
it rebuilds the same author, seq and previous id from the same frame; otherwise it decodes
and checks the frame itself. So the outcome never depends on the guesses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.codec.frame import FrameType, decode_entry_frame, split_ref
from meshnode.codec.message import Entry, decode_entry, decode_short_entry, encode_short_entry
from meshnode.errors import DecodeError, StoreCorrupt
from meshnode.types import FeedId, MsgId, PeerId, Seq

if TYPE_CHECKING:
    from meshnode.core.ebt.session import Host, Session

__all__ = ["EntriesAhead", "same_entry"]

_ENTRY = FrameType.ENTRY


class EntriesAhead:
    """Decodes the entries among frames from one peer before the node takes them.

    Its table holds one id per feed of the entries in flight, so it is bounded by what the
    shell lets into flight; ``clear`` empties it once the node has taken them all.
    """

    def __init__(self, host: Host, sessions: dict[PeerId, Session], peer: PeerId) -> None:
        self._host = host
        self._sessions = sessions
        self._peer = peer
        self._last: dict[FeedId, tuple[int, MsgId]] = {}

    def decode(self, frames: list[bytes]) -> list[Entry | None]:
        """The entry each frame carries, decoded in full form; None for other frames and
        for entries that cannot be decoded now (the node then tries at their turn)."""
        s = self._sessions.get(self._peer)
        out: list[Entry | None] = []
        for frame in frames:
            entry = None
            if s is not None and frame and frame[0] == _ENTRY:
                try:
                    entry = self._entry(s, frame)
                except (DecodeError, StoreCorrupt):
                    entry = None
                if entry is not None:
                    self._last[entry.author] = (entry.seq, entry.id)
            out.append(entry)
        return out

    def clear(self) -> None:
        """Nothing is in flight: the store knows the latest id of every feed again."""
        self._last.clear()

    def _entry(self, s: Session, frame: bytes) -> Entry | None:
        ref, seq, body = decode_entry_frame(frame)
        limit = self._host.max_content_bytes
        if ref is None:
            return decode_entry(body, max_content_bytes=limit)
        index, theirs = split_ref(ref)
        # Read the tables without side effects: a name not known yet is the node's to ask.
        table = s.memory.my_table
        if theirs:
            feed = table[index] if index < len(table) else None
        else:
            feed = s.memory.their_table.get(index)
        if feed is None:
            return None
        previous: MsgId | None = None
        if seq > 1:
            last = self._last.get(feed)
            if last is not None and last[0] == seq - 1:
                previous = last[1]
            else:
                previous = self._host.store.entry_id(feed, Seq(seq - 1))
            if previous is None:
                return None
        return decode_short_entry(
            body, author=feed, seq=Seq(seq), previous=previous, max_content_bytes=limit
        )


def same_entry(ahead: Entry, body: bytes, author: FeedId, seq: int, previous: MsgId | None) -> bool:
    """Whether ``ahead`` is the full form the node rebuilds from the short-form ``body`` of
    entry ``seq`` of ``author`` after ``previous``."""
    return (
        ahead.author == author
        and ahead.seq == seq
        and ahead.previous == previous
        and encode_short_entry(ahead) == body
    )

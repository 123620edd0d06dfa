"""Pushes and flow control: which entries go to a peer next, and how many at once.

A peer that is eager for a feed gets its entries pushed, in seq order per feed and
round-robin across feeds, while its link has fewer than ``window_bytes`` of entries in
flight (the shell reports delivery with ``delivered``). An entry the peer can rebuild
goes in short form (no author, seq or previous hash): when it follows what we think the
peer holds of its feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.frame import encode_entry_frame
from meshnode.codec.message import decode_entry, encode_short_entry
from meshnode.types import Seq

if TYPE_CHECKING:
    from collections.abc import Iterable

    from meshnode.core.ebt.names import FeedNames
    from meshnode.core.ebt.notes import Notes
    from meshnode.core.ebt.session import Host, ReplicationConfig, Session
    from meshnode.types import FeedId, PeerId

__all__ = ["Pusher", "schedule_push"]

_MAX_STORED_CONTENT_BYTES = 1 << 20  # what we stored was checked already: no tighter limit


def schedule_push(s: Session, feed: FeedId, seq: int, *, force: bool = False) -> None:
    """Push ``feed`` to ``s`` from ``seq`` (or from earlier, if already due from there)."""
    current = s.flow.push.get(feed)
    if current is None or force or seq < current:
        s.flow.push[feed] = seq


@dataclass(frozen=True, slots=True, kw_only=True)
class Pusher:
    """Drains every session's frames: control frames first, then entries in the window."""

    host: Host
    config: ReplicationConfig
    names: FeedNames
    notes: Notes

    def frames_to_send(self, sessions: Iterable[Session]) -> list[tuple[PeerId, bytes]]:
        """Drain frames: control first, then pushes round-robin across feeds."""
        out: list[tuple[PeerId, bytes]] = []
        for s in sessions:
            if any(s.clock.notes.values()):
                self.notes.flush(s, urgent_only=True)
            out.extend((s.peer, f) for f in s.control)
            s.control.clear()
            self._drain(s, out)
        return out

    @staticmethod
    def delivered(s: Session, nbytes: int) -> None:
        """The shell has delivered ``nbytes`` of entry frames to the peer's link."""
        s.flow.in_flight = max(0, s.flow.in_flight - nbytes)

    def entry_stored(
        self, sessions: Iterable[Session], feed: FeedId, seq: int, source: PeerId | None, now: float
    ) -> None:
        """Pass a stored entry on: pushed to eager peers that lack it, noted to lazy ones."""
        for s in sessions:
            if s.peer == source:
                continue
            remote = s.memory.remote.get(feed)
            if remote is None or not remote.replicating:
                continue
            known = s.flow.assumed.get(feed, remote.latest)
            if known >= seq:
                continue
            if not remote.lazy and seq >= remote.push_from:
                schedule_push(s, feed, known + 1)
            else:
                self.notes.queue(s, feed, urgent=False, now=now)

    def _drain(self, s: Session, out: list[tuple[PeerId, bytes]]) -> None:
        store = self.host.store
        flow, memory, traffic = s.flow, s.memory, s.traffic
        push = flow.push
        window_bytes = self.config.window_bytes
        while push and flow.in_flight < window_bytes:
            feed, seq = next(iter(push.items()))
            del push[feed]
            head = store.head(feed)
            remote = memory.remote.get(feed)
            if head is None or remote is None or not remote.replicating:
                continue
            seq = max(seq, remote.push_from if remote.start >= 0 else seq)
            if seq < head.first:
                if remote.latest > 0:
                    continue  # we are capped and lack its next entry: it asks someone else
                seq = head.first
            if seq > head.latest:
                continue
            frame = self._entry_frame(s, feed, seq)
            flow.in_flight += len(frame)
            traffic.entry_bytes += len(frame)
            traffic.entries += 1
            out.append((s.peer, frame))
            flow.assumed[feed] = max(flow.assumed.get(feed, 0), seq)
            memory.pushed[feed] = max(memory.pushed.get(feed, 0), seq)
            flow.pushed_now[feed] = seq
            memory.pushed_count += 1
            if seq < head.latest:
                push[feed] = seq + 1  # re-queued at the back: round-robin across feeds

    def _entry_frame(self, s: Session, feed: FeedId, seq: int) -> bytes:
        raw = self.host.store.get(feed, Seq(seq))
        if s.flow.assumed.get(feed, s.memory.remote[feed].latest) == seq - 1 and seq > 1:
            entry = decode_entry(raw, max_content_bytes=_MAX_STORED_CONTENT_BYTES)
            ref = self.names.ref(s, feed)
            return encode_entry_frame(ref, seq, encode_short_entry(entry))
        return encode_entry_frame(None, 0, raw)

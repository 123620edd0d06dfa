"""In-memory index of the flat-file store and its checkpoint (``index.bin``) codec.

The checkpoint layout is specified in the docstring of ``meshnode.store.flatfile``.
"""

from __future__ import annotations

import logging
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from meshnode.codec.message import ContentType, decode_entry
from meshnode.core.store import entries_to_evict, evict_oldest
from meshnode.errors import DecodeError
from meshnode.secure.identity import format_feed_id
from meshnode.store._records import (
    ENTRY_KINDS,
    HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    MISSING,
    Kind,
    Record,
    decode_evict,
    decode_peer,
    pack_offset,
    segment_of,
)
from meshnode.types import FeedId, MsgId, PeerId, Seq

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Covered", "FeedIndex", "Index", "decode_checkpoint", "encode_checkpoint"]

log = logging.getLogger(__name__)

_MAGIC = b"MNINDEX1"
_HEAD = struct.Struct("<8s8sIQIIIII")
_SEGMENT = struct.Struct("<IQQ")
_FEED = struct.Struct("<32sQIIQQI32s")
_PEER = struct.Struct("<32sQI")
_CRC = struct.Struct("<I")
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Covered:
    """Log position a checkpoint covers, and a checksum of the bytes just before it."""

    segment: int
    pos: int
    tail_crc: int


class FeedIndex:
    """What the store knows of one feed without reading the log."""

    __slots__ = (
        "bytes",
        "contacts",
        "evict_len",
        "evict_off",
        "first",
        "latest_id",
        "offsets",
        "sizes",
    )

    def __init__(self, first: Seq) -> None:
        self.first = first
        self.offsets = array("Q")  # global offset of entry first+i; MISSING if lost
        self.sizes = array("I")  # payload bytes of entry first+i
        self.latest_id = MsgId(b"")
        self.bytes = 0
        self.contacts: list[int] = []
        self.evict_off = MISSING  # the EVICT record that is still in force
        self.evict_len = 0

    @property
    def latest(self) -> Seq:
        """Latest seq held."""
        return Seq(self.first + len(self.offsets) - 1)


@dataclass(slots=True)
class Index:
    """Every feed, fork proof and peer record, with segment sizes and dead bytes."""

    feeds: dict[FeedId, FeedIndex] = field(default_factory=dict)
    forks: list[int] = field(default_factory=list)
    peers: dict[PeerId, tuple[int, int]] = field(default_factory=dict)
    segments: dict[int, int] = field(default_factory=dict)
    dead: dict[int, int] = field(default_factory=dict)
    entries: int = 0
    entry_bytes: int = 0

    def add_entry(
        self, feed: FeedId, seq: Seq, content_type: int, entry_id: MsgId, offset: int, size: int
    ) -> bool:
        """Index the entry record at ``offset``; False (nothing done) if seq is not new."""
        fi = self.feeds.get(feed)
        if fi is None:
            fi = self.feeds[feed] = FeedIndex(seq)
        gap = seq - fi.latest - 1
        if gap < 0:
            return False
        if gap > 0:
            log.error(
                "entries %d..%d of %s were lost to damage; run meshnode check",
                fi.latest + 1, seq - 1, format_feed_id(feed),
            )  # fmt: skip
            fi.offsets.extend([MISSING] * gap)
            fi.sizes.extend([0] * gap)
            self.entries += gap
        fi.offsets.append(offset)
        fi.sizes.append(size)
        fi.latest_id = entry_id
        fi.bytes += size
        if content_type == ContentType.CONTACT:
            fi.contacts.append(seq)
        self.entries += 1
        self.entry_bytes += size
        return True

    def drop_latest(self, feed: FeedId, latest_id: MsgId | None) -> None:
        """Undo the latest ``add_entry`` of ``feed`` (its record was never written);
        ``latest_id`` is the feed's latest id before it, None if it had no entry."""
        fi = self.feeds[feed]
        size = fi.sizes.pop()
        fi.offsets.pop()
        if fi.contacts and fi.contacts[-1] == fi.first + len(fi.offsets):
            fi.contacts.pop()
        fi.bytes -= size
        self.entries -= 1
        self.entry_bytes -= size
        if latest_id is None:
            del self.feeds[feed]
        else:
            fi.latest_id = latest_id

    def evictable(self, feed: FeedId, below: Seq) -> int:
        """How many entries evict(feed, below) would drop (never the latest)."""
        fi = self.feeds.get(feed)
        return 0 if fi is None else entries_to_evict(fi.first, len(fi.offsets), below)

    def evict(self, feed: FeedId, below: Seq, offset: int, record_bytes: int) -> int:
        """Apply the EVICT record at ``offset``; returns entry bytes freed."""
        fi = self.feeds.get(feed)
        if fi is None:
            return 0
        # Even when it cuts nothing, the record is now the one in force: the old one is dead.
        if fi.evict_off != MISSING:
            self._kill(fi.evict_off, fi.evict_len)
        fi.evict_off, fi.evict_len = offset, record_bytes
        fi.first, fi.contacts, (offsets, sizes) = evict_oldest(
            fi.first, below, (fi.offsets, fi.sizes), fi.contacts
        )
        for off, size in zip(offsets, sizes, strict=True):
            if off != MISSING:  # an entry lost to damage has no record left to count dead
                self._kill(off, HEADER_BYTES + size)
        freed: int = sum(sizes)
        fi.bytes -= freed
        self.entries -= len(offsets)
        self.entry_bytes -= freed
        return freed

    def restart(
        self, feed: FeedId, seq: Seq, content_type: int, entry_id: MsgId, offset: int, size: int
    ) -> int:
        """Apply the RESTART record at ``offset``: entry ``seq`` starts ``feed`` afresh and
        every entry held before it is dead; returns entry bytes freed."""
        old = self.feeds.get(feed)
        fi = self.feeds[feed] = FeedIndex(seq)  # in its place: the feed order stays
        freed = 0
        if old is not None:
            for off, n in zip(old.offsets, old.sizes, strict=True):
                if off != MISSING:
                    self._kill(off, HEADER_BYTES + n)
            # The EVICT in force stays so: `check` must not call entries it cut lost.
            fi.evict_off, fi.evict_len = old.evict_off, old.evict_len
            freed = old.bytes
            self.entries -= len(old.offsets)
            self.entry_bytes -= freed
        self.add_entry(feed, seq, content_type, entry_id, offset, size)
        return freed

    def apply(self, number: int, record: Record) -> None:
        """Index one record found by a scan of segment ``number``."""
        offset = pack_offset(number, record.pos)
        size = record.end - record.pos
        try:
            if record.kind in ENTRY_KINDS:
                e = decode_entry(record.payload, max_content_bytes=MAX_PAYLOAD_BYTES)
                args = (e.author, e.seq, e.content_type, e.id, offset, size - HEADER_BYTES)
                held = self.feeds.get(e.author)
                if record.kind is Kind.RESTART and (held is None or e.seq > held.latest):
                    self.restart(*args)
                elif not self.add_entry(*args):
                    log.error(
                        "entry at offset %d repeats seq %d of its feed; ignored", offset, e.seq
                    )
            elif record.kind is Kind.EVICT:
                feed, below = decode_evict(record.payload)
                self.evict(feed, below, offset, size)
            elif record.kind is Kind.FORK:
                self.forks.append(offset)
            else:
                peer, state = decode_peer(record.payload)
                self.set_peer(peer, offset, size, forgets=not state)
        except DecodeError as exc:
            log.error("record at offset %d does not decode (%s); ignored", offset, exc)

    def set_peer(self, peer: PeerId, offset: int, record_bytes: int, *, forgets: bool) -> None:
        """The PEER record at ``offset`` replaces any earlier one of ``peer``; one that
        ``forgets`` (it holds no memory) is dead at once, as is the one it replaces."""
        old = self.peers.pop(peer, None)
        if old is not None:
            self._kill(*old)
        if forgets:
            self._kill(offset, record_bytes)
        else:
            self.peers[peer] = (offset, record_bytes)

    def _kill(self, offset: int, record_bytes: int) -> None:
        segment = segment_of(offset)[0]
        self.dead[segment] = self.dead.get(segment, 0) + record_bytes

    def slots_between(self, low: int, high: int) -> list[tuple[FeedId, Seq, int]]:
        """(feed, seq, offset) of every index slot with offset in low..high-1 (a linear walk)."""
        out = []
        for feed, fi in self.feeds.items():
            if fi.offsets and min(fi.offsets) < high:
                for i, offset in enumerate(fi.offsets):
                    if low <= offset < high:
                        out.append((feed, Seq(fi.first + i), offset))
        return out

    def forget(self, slots: list[tuple[FeedId, Seq, int]]) -> None:
        """Mark those slots MISSING: their records are gone."""
        for feed, seq, _ in slots:
            fi = self.feeds[feed]
            i = seq - fi.first
            fi.bytes -= fi.sizes[i]
            self.entry_bytes -= fi.sizes[i]
            fi.offsets[i], fi.sizes[i] = MISSING, 0


def _le(arr: array[int]) -> bytes:
    if sys.byteorder == "big":
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _checkpoint_parts(index: Index, epoch: bytes, covered: Covered) -> Iterator[bytes]:
    counts = (len(index.segments), len(index.feeds), len(index.forks), len(index.peers))
    yield _HEAD.pack(_MAGIC, epoch, covered.segment, covered.pos, covered.tail_crc, *counts)
    for number, size in sorted(index.segments.items()):
        yield _SEGMENT.pack(number, size, index.dead.get(number, 0))
    for feed, fi in index.feeds.items():
        n, n_contacts = len(fi.offsets), len(fi.contacts)
        evict = (fi.evict_off, fi.evict_len)
        yield _FEED.pack(feed, fi.first, n, n_contacts, fi.bytes, *evict, fi.latest_id)
        yield from (_le(fi.offsets), _le(fi.sizes), _le(array("Q", fi.contacts)))
    yield _le(array("Q", index.forks))
    for peer, (offset, n) in index.peers.items():
        yield _PEER.pack(peer, offset, n)


def encode_checkpoint(index: Index, epoch: bytes, covered: Covered) -> Iterator[bytes]:
    """index.bin for ``index`` as of log position ``covered``, in chunks of about 1 MiB.

    Streamed, so that a checkpoint of a large index costs no second copy of it in memory.
    """
    crc = 0
    chunk: list[bytes] = []
    size = 0
    for part in _checkpoint_parts(index, epoch, covered):
        crc = zlib.crc32(part, crc)
        chunk.append(part)
        size += len(part)
        if size >= _CHUNK_BYTES:
            yield b"".join(chunk)
            chunk, size = [], 0
    yield b"".join(chunk) + _CRC.pack(crc)


class _Stream:
    """Reads a checkpoint file piece by piece, keeping a running checksum."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.crc = 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise DecodeError("checkpoint cut short")
        self.crc = zlib.crc32(data, self.crc)
        return data

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.read(layout.size))

    def array(self, typecode: str, count: int) -> array[int]:
        arr = array(typecode)
        arr.frombytes(self.read(count * arr.itemsize))
        if sys.byteorder == "big":
            arr.byteswap()
        return arr


def decode_checkpoint(f: BinaryIO) -> tuple[bytes, Covered, Index]:
    """(epoch, covered position, index) from an index.bin file; DecodeError if damaged."""
    stream = _Stream(f)
    magic, epoch, segment, pos, tail_crc, n_seg, n_feed, n_fork, n_peer = stream.unpack(_HEAD)
    if magic != _MAGIC:
        raise DecodeError("not a meshnode index checkpoint (or another version)")
    index = Index()
    for _ in range(n_seg):
        number, size, dead = stream.unpack(_SEGMENT)
        index.segments[number] = size
        index.dead[number] = dead
    for _ in range(n_feed):
        _decode_feed(index, stream)
    index.forks = stream.array("Q", n_fork).tolist()
    for _ in range(n_peer):
        peer, offset, n = stream.unpack(_PEER)
        index.peers[PeerId(peer)] = (offset, n)
    crc = stream.crc
    if stream.unpack(_CRC)[0] != crc or f.read(1):
        raise DecodeError("checkpoint checksum mismatch")
    return epoch, Covered(segment, pos, tail_crc), index


def _decode_feed(index: Index, stream: _Stream) -> None:
    feed, first, n, n_contacts, nbytes, evict_off, evict_len, latest_id = stream.unpack(_FEED)
    fi = FeedIndex(Seq(first))
    fi.offsets = stream.array("Q", n)
    fi.sizes = stream.array("I", n)
    fi.contacts = stream.array("Q", n_contacts).tolist()
    fi.bytes, fi.evict_off, fi.evict_len = nbytes, evict_off, evict_len
    fi.latest_id = MsgId(latest_id)
    index.feeds[FeedId(feed)] = fi
    index.entries += n
    index.entry_bytes += nbytes

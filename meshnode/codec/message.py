"""Entry codec: the signed unit of a feed, in a full and a short form.

Full form (stored on disk, sent to a receiver that lacks entry n-1)::

    header        1 byte   high nibble: format version (1); bit 0: content is lz4;
                           bit 1: 0 (short-form marker); bits 2-3: 0
    author       32 bytes  ed25519 public key
    seq          varint    1, 2, ...
    previous     32 bytes  sha256 of entry seq-1's full form; absent when seq == 1
    timestamp_ms varint    author-claimed wall time, milliseconds since the Unix epoch
    content_type varint    ContentType code (unknown codes are carried as opaque bytes)
    content      n bytes   everything up to the signature; when bit 0 is set it is
                           varint(plain length) || lz4 block
    signature    64 bytes  ed25519 by author over network_key || all bytes before it

Entry id = sha256(full form, signature included). The signature covers exactly the bytes
that are stored, so a stored record is verified without re-encoding anything.

Compression is the encoder's choice: create_entry uses lz4 when that makes the content
smaller; a browser encoder (meshnode/web/static/codec.js) never compresses (bit 0 clear).
Both are valid entries and every decoder reads either; for content that lz4 shrinks they
differ in bytes and so in id.

Short form (sent to a receiver that holds entry n-1, and so knows author, seq and previous)::

    header        1 byte   as above, with bit 1 set
    timestamp_ms varint
    content_type varint
    content      n bytes
    signature    64 bytes

The receiver rebuilds the full form by inserting author, seq and previous after the header
(and clearing bit 1); the signature then verifies over the rebuilt bytes.

Budget: a 50-byte text post in short form is 1 + 6 + 1 + 50 + 64 = 122 bytes (<= 128).
Content is at most ``max_content_bytes`` (default 8 KiB) both as carried and once
decompressed. Any layout change bumps FORMAT_VERSION and the vectors in tests/vectors/.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import TYPE_CHECKING

from meshnode.codec.compress import compress_block, decompress_block
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import KEY_BYTES, SIGNATURE_BYTES, Identity
from meshnode.types import FeedId, MsgId, Seq

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_CONTENT_BYTES",
    "FORMAT_VERSION",
    "MAX_SEQ",
    "ContentType",
    "Entry",
    "create_entry",
    "decode_entry",
    "decode_short_entry",
    "encode_short_entry",
    "entry_author",
    "entry_seq",
    "is_short_form",
    "short_form",
]

FORMAT_VERSION = 1
DEFAULT_MAX_CONTENT_BYTES = 8192
MAX_SEQ = (1 << 53) - 1  # bounds every seq on the wire, so derived values fit 64 bits

_VERSION_BITS = FORMAT_VERSION << 4
_LZ4 = 0x01
_SHORT = 0x02
_RESERVED = 0x0C
# Below this, lz4 never wins and only costs time.
_COMPRESS_MIN_BYTES = 64
_AUTHOR_END = 1 + KEY_BYTES  # the full form's header byte, then its author


class ContentType(IntEnum):
    """What the content bytes mean."""

    RAW = 0
    POST = 1
    CONTACT = 2
    REPLY = 3
    ABOUT = 4
    PRIVATE = 5
    ENCKEY = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A decoded entry in full form; ``raw`` holds its exact signed bytes."""

    author: FeedId
    seq: Seq
    previous: MsgId | None
    timestamp_ms: int
    content_type: int
    compressed: bool
    content: bytes
    raw: bytes
    id: MsgId

    @property
    def body(self) -> bytes:
        """The bytes the signature covers (after the network key)."""
        return self.raw[:-SIGNATURE_BYTES]

    @property
    def signature(self) -> bytes:
        """The 64-byte ed25519 signature."""
        return self.raw[-SIGNATURE_BYTES:]

    def plain_content(self, max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES) -> bytes:
        """Content with lz4 undone; DecodeError if it does not decompress."""
        if not self.compressed:
            return self.content
        return decompress_block(self.content, max_content_bytes)


def create_entry(
    identity: Identity,
    network_key: bytes,
    *,
    seq: Seq,
    previous: MsgId | None,
    timestamp_ms: int,
    content_type: int,
    content: bytes,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> Entry:
    """Encode and sign a new entry, compressing the content when that makes it smaller.

    Raises:
        ValueError: seq/previous disagree, or the content is over ``max_content_bytes``.
    """
    if not 1 <= seq <= MAX_SEQ or (seq == 1) != (previous is None):
        raise ValueError("seq 1 has no previous; every later seq needs one (seq < 2**53)")
    if previous is not None and len(previous) != KEY_BYTES:
        raise ValueError("previous must be a 32-byte id")
    if len(content) > max_content_bytes:
        raise ValueError(f"content is {len(content)} bytes, limit is {max_content_bytes}")
    header = _VERSION_BITS
    if len(content) >= _COMPRESS_MIN_BYTES:
        packed = compress_block(content)
        if len(packed) < len(content):
            header |= _LZ4
            content = packed
    parts = [bytes((header,)), identity.feed_id, encode_varint(seq)]
    if previous is not None:
        parts.append(previous)
    parts += [encode_varint(timestamp_ms), encode_varint(content_type), content]
    body = b"".join(parts)
    raw = body + identity.sign(network_key, body)
    return decode_entry(raw, max_content_bytes=max_content_bytes)


def entry_author(raw: bytes) -> FeedId:
    """Author of a full-form entry without decoding the rest; DecodeError if too short."""
    if len(raw) < _AUTHOR_END:
        raise DecodeError("entry too short for an author")
    return FeedId(raw[1:_AUTHOR_END])


def entry_seq(raw: bytes) -> int:
    """Seq of a full-form entry without decoding the rest; DecodeError if malformed."""
    if len(raw) > _AUTHOR_END and raw[_AUTHOR_END] < 0x80:  # the common one-byte varint
        return raw[_AUTHOR_END]
    if len(raw) <= _AUTHOR_END:
        raise DecodeError("entry too short for a seq")
    return decode_varint(raw, _AUTHOR_END)[0]


def is_short_form(raw: bytes) -> bool:
    """Whether ``raw`` is an entry's short form (its header's bit 1); DecodeError if empty."""
    if not raw:
        raise DecodeError("empty entry")
    return bool(raw[0] & _SHORT)


def decode_entry(raw: bytes, *, max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES) -> Entry:
    """Decode a full-form entry (structure only: the signature is checked by feed.py).

    Raises:
        DecodeError: any malformed input.
    """
    end = len(raw) - SIGNATURE_BYTES
    if end < 1 + KEY_BYTES + 1 + 1 + 1:
        raise DecodeError(f"entry too short ({len(raw)} bytes)")
    header = raw[0]
    if header & ~_LZ4 != _VERSION_BITS:  # the common case in one test; details below
        _check_header(header, short=False)
    # One-byte varints take a fast path: most feeds are short, most content types small.
    seq = raw[_AUTHOR_END]
    if seq < 0x80:
        pos = _AUTHOR_END + 1
    else:
        seq, pos = decode_varint(raw, _AUTHOR_END)
    if not 1 <= seq <= MAX_SEQ:
        raise DecodeError(f"seq {seq} outside 1..2**53-1")
    previous = None
    if seq > 1:
        previous = raw[pos : pos + KEY_BYTES]
        pos += KEY_BYTES
    timestamp_ms, pos = decode_varint(raw, pos)
    content_type = raw[pos] if pos < end else 0x80
    if content_type < 0x80:
        pos += 1
    else:
        content_type, pos = decode_varint(raw, pos)
    if pos > end:
        raise DecodeError("entry truncated before its signature")
    if end - pos > max_content_bytes + 10:
        raise DecodeError(f"content is {end - pos} bytes, limit is {max_content_bytes}")
    compressed = header & _LZ4 == _LZ4
    if not compressed and end - pos > max_content_bytes:
        raise DecodeError(f"content is {end - pos} bytes, limit is {max_content_bytes}")
    return _new_entry(
        raw[1:_AUTHOR_END],
        seq,
        previous,
        timestamp_ms,
        content_type,
        compressed,
        raw[pos:end],
        raw,
        hashlib.sha256(raw).digest(),
    )


def _entry_builder() -> Callable[..., Entry]:
    """Build an Entry from its fields in order, through the slots' own setters.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``:
    about 1 us an entry, a quarter of decoding one. The result is the same object.
    """
    names = [f.name for f in fields(Entry)]
    assert names == list(Entry.__slots__)
    setters = [getattr(Entry, name).__set__ for name in names]
    new = object.__new__
    (s_author, s_seq, s_previous, s_ts, s_type, s_compressed, s_content, s_raw, s_id) = setters

    def build(
        author: bytes, seq: int, previous: bytes | None, timestamp_ms: int, content_type: int,
        compressed: bool, content: bytes, raw: bytes, entry_id: bytes,
    ) -> Entry:  # fmt: skip
        entry = new(Entry)
        s_author(entry, author)
        s_seq(entry, seq)
        s_previous(entry, previous)
        s_ts(entry, timestamp_ms)
        s_type(entry, content_type)
        s_compressed(entry, compressed)
        s_content(entry, content)
        s_raw(entry, raw)
        s_id(entry, entry_id)
        return entry

    return build


_new_entry = _entry_builder()


def encode_short_entry(entry: Entry) -> bytes:
    """The short form of ``entry``, for a receiver that holds entry seq-1."""
    return short_form(entry.raw, entry.seq)


def short_form(raw: bytes, seq: int) -> bytes:
    """The short form of the valid full-form entry ``raw`` of seq ``seq``, without
    decoding it (a stored entry: its previous id is there exactly when seq > 1)."""
    skip = 1 + KEY_BYTES + len(encode_varint(seq)) + (KEY_BYTES if seq > 1 else 0)
    return bytes((raw[0] | _SHORT,)) + raw[skip:]


def decode_short_entry(
    buf: bytes,
    *,
    author: FeedId,
    seq: Seq,
    previous: MsgId | None,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> Entry:
    """Rebuild the full form from a short form and what the receiver already knows.

    Raises:
        DecodeError: malformed input.
    """
    if len(buf) < 1 + 1 + 1 + SIGNATURE_BYTES:
        raise DecodeError(f"short entry too short ({len(buf)} bytes)")
    _check_header(buf[0], short=True)
    if seq < 1 or (seq == 1) != (previous is None):
        raise DecodeError("short entry needs the previous id for seq > 1")
    prefix = bytes((buf[0] & ~_SHORT,)) + author + encode_varint(seq) + (previous or b"")
    return decode_entry(prefix + buf[1:], max_content_bytes=max_content_bytes)


def _check_header(header: int, *, short: bool) -> None:
    if header >> 4 != FORMAT_VERSION:
        raise DecodeError(f"unknown entry format version {header >> 4}")
    if header & _RESERVED:
        raise DecodeError("reserved header bits set")
    if bool(header & _SHORT) != short:
        raise DecodeError(
            "short-form entry where a full one was expected"
            if not short
            else "full-form entry where a short one was expected"
        )

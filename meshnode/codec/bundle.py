"""Bundle file: signed entries carried between nodes (``meshnode export`` / ``import``).

Layout::

    magic        8 bytes  b"MNBUNDLE"
    version      1 byte   1
    network tag  4 bytes  identity.network_tag of the network key, as bytes
    body         rest     lz4 frame of repeated (varint length, full-form entry)

The tag sits outside the compressed body so a bundle of another network is refused before
any work. Entries are not trusted: the importer verifies each one like any received entry.

Bundles from outside (a drive's segments, ``meshnode import``) are decoded strictly: a
record shorter than the shortest entry (MIN_ENTRY_BYTES) or more records than the file's
size can pack (``max_records``: each entry carries a 64-byte random signature) refuse the
bundle, so what it costs to read one stays linear in its size. The encoder never makes
either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.codec.compress import compress_stream, decompress_chunks, decompress_stream
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import network_tag

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "MIN_ENTRY_BYTES",
    "PACKED_BYTES_PER_ENTRY",
    "decode_bundle",
    "encode_bundle",
    "max_records",
    "read_bundle",
]

BUNDLE_MAGIC = b"MNBUNDLE"
BUNDLE_VERSION = 1
_HEADER_BYTES = len(BUNDLE_MAGIC) + 1 + 4
# An entry is at most a few KiB; anything far larger is corruption, not content.
_MAX_RECORD_BYTES = 1 << 20
# The shortest full-form entry (codec/message.py): header, author, one-byte seq, timestamp
# and type, and the signature. A shorter record is no entry (strict decoding).
MIN_ENTRY_BYTES = 1 + 32 + 1 + 1 + 1 + 64
# Each entry's 64-byte signature is random, so lz4 packs no entry into fewer bytes than
# this: a bundle of N bytes holds at most N // 64 + 1 entries (strict decoding).
PACKED_BYTES_PER_ENTRY = 64
_STEP_BYTES = 64 << 10  # a streamed body is decompressed this much at a time


def _tag(network_key: bytes) -> bytes:
    return bytes.fromhex(network_tag(network_key))


def max_records(packed_bytes: int) -> int:
    """Most entries a bundle file of ``packed_bytes`` can hold (see PACKED_BYTES_PER_ENTRY)."""
    return packed_bytes // PACKED_BYTES_PER_ENTRY + 1


def encode_bundle(network_key: bytes, raws: Iterable[bytes]) -> bytes:
    """Pack full-form entries into a bundle for ``network_key``."""
    body = b"".join(encode_varint(len(raw)) + raw for raw in raws)
    return BUNDLE_MAGIC + bytes((BUNDLE_VERSION,)) + _tag(network_key) + compress_stream(body)


def _check_header(head: bytes, network_key: bytes) -> None:
    if len(head) < _HEADER_BYTES or not head.startswith(BUNDLE_MAGIC):
        raise DecodeError("not a meshnode bundle (bad magic)")
    if head[8] != BUNDLE_VERSION:
        raise DecodeError(f"bundle version {head[8]} is not supported (expected 1)")
    tag = head[9:13]
    if tag != _tag(network_key):
        raise DecodeError(
            f"bundle belongs to network {tag.hex()}, this node is on network "
            f"{_tag(network_key).hex()}"
        )


@dataclass(slots=True)
class _Records:
    """Where record parsing stands: bytes of the body used, records seen, and the limits."""

    min_bytes: int = 0
    most: int | None = None
    count: int = 0
    used: int = 0


def decode_bundle(
    data: bytes, network_key: bytes, max_body_bytes: int | None = None, *, strict: bool = False
) -> Iterator[bytes]:
    """Yield the full-form entries of a bundle, unverified.

    Args:
        data: the whole bundle.
        network_key: this node's network key; a bundle of another network is refused.
        max_body_bytes: refuse a body that decompresses to more (None: no limit).
        strict: refuse records shorter than MIN_ENTRY_BYTES, and more records than
            ``max_records(len(data))``: what a bundle from outside may cost is then
            linear in its size.

    Raises:
        DecodeError: not a bundle, another version, another network, a damaged body, one
            over ``max_body_bytes``, or (strict) records no bundle of entries holds.
    """
    _check_header(data[:_HEADER_BYTES], network_key)
    body = decompress_stream(data[_HEADER_BYTES:], max_body_bytes)
    state = _limits(len(data)) if strict else _Records()
    yield from _split(body, state, final=True)


def read_bundle(
    chunks: Iterable[bytes], network_key: bytes, *, packed_bytes: int
) -> Iterator[bytes]:
    """``decode_bundle(..., strict=True)`` of a bundle of ``packed_bytes`` given in pieces (a
    file read a chunk at a time): memory stays within a chunk, a step of body and one record.

    Raises:
        DecodeError: as decode_bundle's, strict; or the pieces add up to more than
            ``packed_bytes``.
    """
    pieces = _counted(chunks, packed_bytes)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= _HEADER_BYTES:
            break
    _check_header(head[:_HEADER_BYTES], network_key)
    rest = head[_HEADER_BYTES:]
    state = _limits(packed_bytes)
    left = b""
    for out in decompress_chunks(_prepend(rest, pieces), _STEP_BYTES):
        buf = left + out if left else out
        yield from _split(buf, state, final=False)
        left = buf[state.used :]
    if left:
        raise DecodeError(f"bundle record {state.count + 1} is truncated")


def _limits(packed_bytes: int) -> _Records:
    return _Records(min_bytes=MIN_ENTRY_BYTES, most=max_records(packed_bytes))


def _counted(chunks: Iterable[bytes], packed_bytes: int) -> Iterator[bytes]:
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > packed_bytes:
            raise DecodeError(f"bundle grew past its {packed_bytes} bytes while being read")
        yield chunk


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _split(body: bytes, state: _Records, *, final: bool) -> Iterator[bytes]:
    """Yield the whole records of ``body``; ``state.used`` tells how far they went (a
    cut-off last record is left for the next piece unless ``final``)."""
    pos, end = 0, len(body)
    count, most, min_bytes = state.count, state.most, state.min_bytes
    while pos < end:
        start = pos
        first = body[pos]
        if first < 0x80:  # the common lengths inline: a drive holds 100,000s of entries
            size, pos = first, pos + 1
        elif pos + 1 < end and 0 < body[pos + 1] < 0x80:
            size, pos = (first & 0x7F) | (body[pos + 1] << 7), pos + 2
        elif not final and end - pos < 10:
            pos = start  # the length itself is cut: wait for more
            break
        else:
            size, pos = decode_varint(body, pos)
        if size > _MAX_RECORD_BYTES:
            raise DecodeError(f"bundle record at byte {pos} is truncated or oversized")
        if pos + size > end:
            if final:
                raise DecodeError(f"bundle record at byte {pos} is truncated or oversized")
            pos = start
            break
        if size < min_bytes:
            raise DecodeError(f"bundle record {count + 1} is {size} bytes: shorter than any entry")
        count += 1
        if most is not None and count > most:
            raise DecodeError(f"bundle holds more than the {most} entries its size allows")
        state.count = count
        yield body[pos : pos + size]
        pos += size
    state.count, state.used = count, pos

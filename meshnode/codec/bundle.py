"""Bundle file: signed entries carried between nodes (``meshnode export`` / ``import``).

Layout::

    magic        8 bytes  b"MNBUNDLE"
    version      1 byte   1
    network tag  4 bytes  identity.network_tag of the network key, as bytes
    body         rest     lz4 frame of repeated (varint length, full-form entry)

The tag sits outside the compressed body so a bundle of another network is refused before
any work. Entries are not trusted: the importer verifies each one like any received entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.codec.compress import compress_stream, decompress_stream
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import network_tag

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["BUNDLE_MAGIC", "BUNDLE_VERSION", "decode_bundle", "encode_bundle"]

BUNDLE_MAGIC = b"MNBUNDLE"
BUNDLE_VERSION = 1
_HEADER_BYTES = len(BUNDLE_MAGIC) + 1 + 4
# An entry is at most a few KiB; anything far larger is corruption, not content.
_MAX_RECORD_BYTES = 1 << 20


def _tag(network_key: bytes) -> bytes:
    return bytes.fromhex(network_tag(network_key))


def encode_bundle(network_key: bytes, raws: Iterable[bytes]) -> bytes:
    """Pack full-form entries into a bundle for ``network_key``."""
    body = b"".join(encode_varint(len(raw)) + raw for raw in raws)
    return BUNDLE_MAGIC + bytes((BUNDLE_VERSION,)) + _tag(network_key) + compress_stream(body)


def decode_bundle(
    data: bytes, network_key: bytes, max_body_bytes: int | None = None
) -> Iterator[bytes]:
    """Yield the full-form entries of a bundle, unverified.

    Args:
        data: the whole bundle.
        network_key: this node's network key; a bundle of another network is refused.
        max_body_bytes: refuse a body that decompresses to more (None: no limit).

    Raises:
        DecodeError: not a bundle, another version, another network, a damaged body, or
            one over ``max_body_bytes``.
    """
    if len(data) < _HEADER_BYTES or not data.startswith(BUNDLE_MAGIC):
        raise DecodeError("not a meshnode bundle (bad magic)")
    if data[8] != BUNDLE_VERSION:
        raise DecodeError(f"bundle version {data[8]} is not supported (expected 1)")
    tag = data[9:13]
    if tag != _tag(network_key):
        raise DecodeError(
            f"bundle belongs to network {tag.hex()}, this node is on network "
            f"{_tag(network_key).hex()}"
        )
    body = decompress_stream(data[_HEADER_BYTES:], max_body_bytes)
    pos, end = 0, len(body)
    while pos < end:
        first = body[pos]
        if first < 0x80:  # the common lengths inline: a drive holds 100,000s of entries
            size, pos = first, pos + 1
        elif pos + 1 < end and 0 < body[pos + 1] < 0x80:
            size, pos = (first & 0x7F) | (body[pos + 1] << 7), pos + 2
        else:
            size, pos = decode_varint(body, pos)
        if size > _MAX_RECORD_BYTES or pos + size > end:
            raise DecodeError(f"bundle record at byte {pos} is truncated or oversized")
        yield body[pos : pos + size]
        pos += size

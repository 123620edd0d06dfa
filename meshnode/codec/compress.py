"""lz4 wrappers; the only module that imports lz4.

Block form (entry content): ``varint(uncompressed_len) || lz4 block``. Stream form
(bundles): the standard lz4 frame format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lz4.block
import lz4.frame

from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "compress_block",
    "compress_stream",
    "decompress_block",
    "decompress_chunks",
    "decompress_stream",
]


def compress_block(data: bytes) -> bytes:
    """lz4-compress ``data`` with its length in front."""
    packed: bytes = lz4.block.compress(data, store_size=False)
    return encode_varint(len(data)) + packed


def decompress_block(blob: bytes, max_bytes: int) -> bytes:
    """Inverse of compress_block; refuses output longer than ``max_bytes``.

    Raises:
        DecodeError: malformed, or the claimed size is over ``max_bytes``.
    """
    size, pos = decode_varint(blob)
    if size > max_bytes:
        raise DecodeError(f"compressed content claims {size} bytes, limit is {max_bytes}")
    try:
        out: bytes = lz4.block.decompress(blob[pos:], uncompressed_size=size)
    except (lz4.block.LZ4BlockError, ValueError, MemoryError) as exc:
        raise DecodeError("content is not valid lz4") from exc
    if len(out) != size:
        raise DecodeError("lz4 content has the wrong length")
    return out


def compress_stream(data: bytes) -> bytes:
    """Whole-buffer lz4 frame."""
    out: bytes = lz4.frame.compress(data)
    return out


def decompress_stream(data: bytes, max_bytes: int | None = None) -> bytes:
    """Whole-buffer lz4 frame decode; DecodeError if malformed, cut, or (when ``max_bytes``
    is given) longer than ``max_bytes``: a few KiB of lz4 can claim gigabytes."""
    if max_bytes is None:
        try:
            out: bytes = lz4.frame.decompress(data)
        except (RuntimeError, ValueError) as exc:
            raise DecodeError("not a valid lz4 frame") from exc
        return out
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        out = decompressor.decompress(data, max_length=max_bytes)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise DecodeError("not a valid lz4 frame") from exc
    if not decompressor.eof:
        why = "cut short" if decompressor.needs_input else f"longer than {max_bytes} bytes"
        raise DecodeError(f"lz4 frame is {why}")
    return out


def decompress_chunks(chunks: Iterable[bytes], step_bytes: int) -> Iterator[bytes]:
    """lz4 frame decode of a stream given in pieces, yielding at most ``step_bytes`` at a
    time: memory stays bounded whatever the frame claims. Bytes after the frame's end are
    not read. DecodeError if the frame is malformed or cut short."""
    decompressor = lz4.frame.LZ4FrameDecompressor()
    for chunk in chunks:
        data = chunk
        while not decompressor.eof:
            try:
                out: bytes = decompressor.decompress(data, max_length=step_bytes)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise DecodeError("not a valid lz4 frame") from exc
            data = b""
            if out:
                yield out
            if decompressor.needs_input or not out:
                break
        if decompressor.eof:
            return
    raise DecodeError("lz4 frame is cut short")

"""Unsigned LEB128 varints: 7 bits per byte, low group first, high bit = more follows.

Only the minimal encoding is accepted, so every value has exactly one byte form (signed
bytes stay canonical). Values are limited to 64 bits (at most 10 bytes).
"""

from __future__ import annotations

from meshnode.errors import DecodeError

__all__ = ["MAX_VARINT_BYTES", "decode_varint", "encode_varint", "varint_size"]

MAX_VARINT_BYTES = 10
_MAX_VALUE = (1 << 64) - 1


def encode_varint(value: int) -> bytes:
    """Encode ``0 <= value < 2**64``."""
    if value < 0x80:
        if value < 0:
            raise ValueError("varint must be non-negative")
        return bytes((value,))
    if value > _MAX_VALUE:
        raise ValueError("varint must fit 64 bits")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:]``; returns (value, position after it).

    Raises:
        DecodeError: truncated, longer than 10 bytes, over 64 bits, or not minimal.
    """
    try:
        byte = buf[pos]
    except IndexError:
        raise DecodeError("truncated varint") from None
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    end = min(len(buf), pos + MAX_VARINT_BYTES)
    i = pos + 1
    while i < end:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            if byte == 0:
                raise DecodeError("varint is not minimally encoded")
            if value > _MAX_VALUE:
                raise DecodeError("varint exceeds 64 bits")
            return value, i
        shift += 7
    if i - pos >= MAX_VARINT_BYTES:
        raise DecodeError("varint longer than 10 bytes")
    raise DecodeError("truncated varint")


def varint_size(value: int) -> int:
    """Number of bytes ``encode_varint(value)`` takes."""
    return max(1, (value.bit_length() + 6) // 7)

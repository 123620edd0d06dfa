"""Seeded inputs on which the browser's decoders must agree with the Python codec.

Each generator returns byte strings: real encodings, the same with a byte flipped, cut or
added, and hand-made lz4 sequences that probe the block format's end-of-block rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshnode.codec.compress import compress_block, decompress_block
from meshnode.codec.message import decode_entry
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.core.feed import check_content
from meshnode.errors import DecodeError

if TYPE_CHECKING:
    import random

__all__ = [
    "ED25519_L",
    "entry_mutants",
    "lz4_blocks",
    "python_decompress",
    "python_varint",
    "python_verify",
    "varint_inputs",
]

ED25519_L = (1 << 252) + 27742317777372353535851937790883648493
_MAX_CONTENT_BYTES = 8192


def python_varint(blob: bytes) -> list[Any] | str:
    """decode_varint's answer in the page's terms: [value as text, end] or the error class."""
    try:
        value, end = decode_varint(blob)
    except DecodeError as exc:
        return f"error {type(exc).__name__}"
    return [str(value), end]


def python_decompress(blob: bytes) -> str:
    """decompress_block's answer in the page's terms: plain hex or the error class."""
    try:
        return decompress_block(blob, _MAX_CONTENT_BYTES).hex()
    except DecodeError as exc:
        return f"error {type(exc).__name__}"


def python_verify(raw: bytes, network_key: bytes) -> str:
    """What a box makes of an entry (decode, signature, content): ``ok <id>`` or the error."""
    try:
        entry = decode_entry(raw)
        check_content(entry, network_key, _MAX_CONTENT_BYTES)
    except DecodeError as exc:
        return f"error {type(exc).__name__}"
    return f"ok {entry.id.hex()}"


def varint_inputs(rng: random.Random, count: int) -> list[bytes]:
    """Edge cases (non-minimal, too long, over 64 bits, cut) and random short strings."""
    edges = [
        "",
        "80",
        "ff",
        "8000",
        "ff00",
        "808000",
        "ffffffffffffffffff01",
        "ffffffffffffffffff02",
    ]
    edges += [
        "ffffffffffffffffff7f",
        "8080808080808080808001",
        "ffffffffffffff0f",
        "ffffffffffffff7f",
    ]
    found = [bytes.fromhex(h) for h in edges]
    found += [encode_varint(rng.getrandbits(rng.choice((7, 14, 53, 54, 64)))) for _ in range(count)]
    return found + [rng.randbytes(rng.randint(1, 11)) for _ in range(count)]


def lz4_blocks(rng: random.Random, count: int) -> tuple[list[bytes], list[bytes]]:
    """(real compressions, strange blocks): mutants of real ones and hand-made sequences."""
    real = [compress_block(_compressible(rng, rng.randint(0, 400))) for _ in range(count)]
    strange = []
    for _ in range(count):
        blob = bytearray(compress_block(_compressible(rng, rng.randint(1, 300))))
        match rng.randrange(3):
            case 0:
                blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
            case 1:
                del blob[rng.randrange(len(blob)) :]
            case _:
                blob.append(rng.randrange(256))
        strange += [bytes(blob), _hand_made_block(rng)]
    return real, strange


def entry_mutants(rng: random.Random, raw: bytes, count: int) -> list[bytes]:
    """An entry with a byte flipped, cut, grown, its header changed, or S + L as signature."""
    found = [bytes((header,)) + raw[1:] for header in (0x00, 0x12, 0x14, 0x18, 0x20, raw[0] ^ 1)]
    s = int.from_bytes(raw[-32:], "little")
    found.append(raw[:-32] + (s + ED25519_L).to_bytes(32, "little"))  # the same point, new id
    for _ in range(count):
        mutant = bytearray(raw)
        mutant[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        found += [bytes(mutant), raw[: rng.randrange(len(raw))], raw + rng.randbytes(1)]
    return found


def _compressible(rng: random.Random, size: int) -> bytes:
    alphabet = rng.randbytes(rng.choice((1, 3, 16, 256)))
    return bytes(rng.choice(alphabet) for _ in range(size))


def _hand_made_block(rng: random.Random) -> bytes:
    """Sequences with lengths and offsets near the rules' edges, and a claimed size near theirs."""
    out = bytearray()
    produced = 0
    for _ in range(rng.randint(0, 4)):
        literals = rng.choice((0, 1, 4, 8, 14, 15, 16, 30, rng.randint(0, 40)))
        match = rng.choice((4, 5, 7, 18, 19, 20, 40, rng.randint(4, 80)))
        out.append(min(literals, 15) << 4 | min(match - 4, 15))
        out += _extra_length(literals - 15) + rng.randbytes(literals)
        produced += literals
        offset = rng.choice((0, 1, 2, 8, 9, produced, produced + 1, rng.randint(0, produced + 2)))
        out += (offset & 0xFFFF).to_bytes(2, "little") + _extra_length(match - 4 - 15)
        produced += match
    literals = rng.choice((0, 1, 4, 5, 6, 12, 15, 20))
    out.append(min(literals, 15) << 4)
    out += _extra_length(literals - 15) + rng.randbytes(literals)
    size = max(0, produced + literals + rng.choice((0, 0, 0, -1, 1)))
    return encode_varint(size) + bytes(out)


def _extra_length(rest: int) -> bytes:
    """lz4's length bytes past a full nibble (255 while more follows); none under 0."""
    if rest < 0:
        return b""
    return b"\xff" * (rest // 255) + bytes((rest % 255,))

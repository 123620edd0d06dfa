"""decode_entry's fast path gives the same frozen Entry as the dataclass's own constructor."""

from __future__ import annotations

import dataclasses

import pytest

from meshnode.codec.message import ContentType, Entry, create_entry, decode_entry
from meshnode.codec.varint import decode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.types import Seq
from tests.fakes import identity, make_chain


def _one(who: Identity, *, timestamp_ms: int, content_type: int, content: bytes) -> Entry:
    return create_entry(
        who,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=timestamp_ms,
        content_type=content_type,
        content=content,
    )


ENTRIES = [
    *make_chain(identity(70), 3),
    *make_chain(identity(71), 2, size=300),  # lz4 content
    _one(identity(72), timestamp_ms=0, content_type=200, content=b""),
    _one(identity(73), timestamp_ms=2**60, content_type=ContentType.POST, content=b"x"),
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_decoded_entry_equals_one_built_by_init(entry: Entry) -> None:
    decoded = decode_entry(entry.raw)
    rebuilt = dataclasses.replace(decoded)  # through the generated __init__
    assert decoded == rebuilt
    assert hash(decoded) == hash(rebuilt)
    assert [getattr(decoded, f.name) for f in dataclasses.fields(decoded)] == [
        getattr(rebuilt, f.name) for f in dataclasses.fields(rebuilt)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.seq = Seq(9)  # type: ignore[misc]


def _reference(raw: bytes) -> tuple[object, ...] | str:
    """The layout of the codec docstring, read with the plain varint decoder."""
    try:
        if len(raw) < 1 + 32 + 3 + 64 or raw[0] & 0xFE != 0x10:
            return "malformed"
        seq, pos = decode_varint(raw, 33)
        previous = None
        if seq > 1:
            previous, pos = raw[pos : pos + 32], pos + 32
        timestamp_ms, pos = decode_varint(raw, pos)
        content_type, pos = decode_varint(raw, pos)
    except DecodeError:
        return "malformed"
    end = len(raw) - 64
    if seq < 1 or pos > end or end - pos > 8192:
        return "malformed"
    return (raw[1:33], seq, previous, timestamp_ms, content_type, raw[pos:end])


def _decoded(raw: bytes) -> tuple[object, ...] | str:
    try:
        e = decode_entry(raw)
    except DecodeError:
        return "malformed"
    return (e.author, e.seq, e.previous, e.timestamp_ms, e.content_type, e.content)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_cut_and_flipped_byte_decodes_as_the_layout_says(entry: Entry) -> None:
    raw = entry.raw
    variants = [raw[:cut] for cut in range(len(raw))]
    variants += [raw[:i] + bytes([raw[i] ^ 0x80]) + raw[i + 1 :] for i in range(34, 80)]
    for variant in variants:
        assert _decoded(variant) == _reference(variant), variant.hex()

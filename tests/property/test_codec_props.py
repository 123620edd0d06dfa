"""Codec properties: round trips, and garbage in gives DecodeError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.bundle import decode_bundle, encode_bundle
from meshnode.codec.content import decode_contact
from meshnode.codec.message import (
    create_entry,
    decode_entry,
    decode_short_entry,
    encode_short_entry,
    entry_author,
    entry_seq,
    is_short_form,
)
from meshnode.codec.varint import decode_varint, encode_varint, varint_size
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, MsgId, Seq
from tests.fakes import identity

ALICE = identity(1)


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert len(data) == varint_size(value)
    assert decode_varint(data + b"\xff") == (value, len(data))


@given(st.binary(max_size=12))
def test_varint_garbage(data: bytes) -> None:
    try:
        value, end = decode_varint(data)
    except DecodeError:
        return
    assert encode_varint(value) == data[:end]


@given(
    seq=st.integers(1, 2**40),
    ts=st.integers(0, 2**63),
    ctype=st.integers(0, 300),
    content=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode)),
    prev=st.binary(min_size=32, max_size=32),
)
def test_entry_round_trip_both_forms(
    seq: int, ts: int, ctype: int, content: bytes, prev: bytes
) -> None:
    previous = MsgId(prev) if seq > 1 else None
    entry = create_entry(
        ALICE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(seq),
        previous=previous,
        timestamp_ms=ts,
        content_type=ctype,
        content=content,
    )
    assert decode_entry(entry.raw) == entry
    assert entry.plain_content() == content
    assert (entry_author(entry.raw), entry_seq(entry.raw)) == (entry.author, entry.seq)
    short = encode_short_entry(entry)
    assert len(short) < len(entry.raw)
    assert is_short_form(short)
    assert not is_short_form(entry.raw)
    rebuilt = decode_short_entry(
        short, author=FeedId(ALICE.feed_id), seq=Seq(seq), previous=previous
    )
    assert rebuilt == entry


@given(st.binary(max_size=400))
def test_entry_garbage_gives_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_entry(data)
    for accessor in (entry_author, entry_seq, is_short_form):
        with contextlib.suppress(DecodeError):
            accessor(data)


@given(st.binary(max_size=200), st.integers(1, 5))
def test_short_entry_garbage_gives_decode_error_only(data: bytes, seq: int) -> None:
    prev = MsgId(bytes(32)) if seq > 1 else None
    with contextlib.suppress(DecodeError):
        decode_short_entry(data, author=FeedId(bytes(32)), seq=Seq(seq), previous=prev)


@given(st.binary(max_size=300))
def test_compressed_content_garbage(data: bytes) -> None:
    entry = create_entry(
        ALICE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=0,
        content_type=0,
        content=b"a" * 200,
    )
    assert entry.compressed
    # Replace the compressed content with garbage: decoding content must fail cleanly.
    head = entry.raw[: len(entry.raw) - 64 - len(entry.content)]
    forged = decode_entry(bytes(head) + data + entry.signature)
    with contextlib.suppress(DecodeError):
        forged.plain_content()


@given(st.binary(max_size=40))
def test_contact_garbage(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_contact(data)


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20))
def test_bundle_round_trip(raws: list[bytes]) -> None:
    assert (
        list(decode_bundle(encode_bundle(DEFAULT_NETWORK_KEY, raws), DEFAULT_NETWORK_KEY)) == raws
    )


@given(st.binary(max_size=200))
def test_bundle_garbage(data: bytes) -> None:
    for prefix in (b"", encode_bundle(DEFAULT_NETWORK_KEY, [])[:13]):
        with contextlib.suppress(DecodeError):
            list(decode_bundle(prefix + data, DEFAULT_NETWORK_KEY))


def test_bundle_of_another_network_is_refused() -> None:
    data = encode_bundle(bytes(32), [b"x"])
    with pytest.raises(DecodeError, match="belongs to network"):
        list(decode_bundle(data, DEFAULT_NETWORK_KEY))

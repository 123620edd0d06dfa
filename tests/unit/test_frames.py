"""Session frames and notes: known answers, round trips, and garbage."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.frame import (
    FrameType,
    Hello,
    decode_define,
    decode_define_key,
    decode_entry_frame,
    decode_hello,
    decode_indexes,
    encode_define,
    encode_entry_frame,
    encode_hello,
)
from meshnode.core.clocks import (
    Note,
    PeerMemory,
    decode_note,
    decode_peer_memory,
    encode_note,
    encode_peer_memory,
    feed_tag,
)
from meshnode.errors import DecodeError
from meshnode.types import FeedId

V = json.loads((Path(__file__).parent.parent / "vectors" / "frames.json").read_text())


def test_hello_vectors() -> None:
    hello = decode_hello(bytes.fromhex(V["hello"]))
    assert hello == Hello(
        version=1,
        epoch=bytes(range(8)),
        seen_epoch=bytes(8),
        got_yours=True,
        received=300,
        sessions=5,
    )
    assert encode_hello(hello).hex() == V["hello"]
    lossy = decode_hello(bytes.fromhex(V["hello_lossy"]))
    assert lossy.ack_wanted
    assert not lossy.got_yours
    assert encode_hello(lossy).hex() == V["hello_lossy"]


def test_define_vectors() -> None:
    assert decode_define(bytes.fromhex(V["define"])) == (5, [7, 1000, 1001, 2**32 - 1])
    assert encode_define(5, [7, 1000, 1001, 2**32 - 1]).hex() == V["define"]
    assert decode_define_key(bytes.fromhex(V["define_key"])) == [(3, bytes(range(32)))]


@pytest.mark.parametrize("case", V["notes"], ids=lambda c: str(c["hex"]))
def test_note_vectors(case: dict[str, Any]) -> None:
    note = Note(case["latest"], bool(case["lazy"]), case["first"], case["start"])
    hex_: str = case["hex"]
    assert encode_note(note).hex() == hex_
    assert decode_note(bytes.fromhex(hex_), 0) == (note, len(hex_) // 2)


def test_typical_note_is_at_most_four_bytes() -> None:
    assert all(len(bytes.fromhex(c["hex"])) <= 4 for c in V["notes"])


def test_entry_and_index_frame_vectors() -> None:
    assert decode_entry_frame(bytes.fromhex(V["entry_full"])) == (None, 0, b"\x10fullentry")
    assert decode_entry_frame(bytes.fromhex(V["entry_short"])) == (9, 9, b"\x12short")
    assert decode_indexes(bytes.fromhex(V["want_key"])) == [1, 200]
    assert bytes.fromhex(V["notes_frame"])[0] == FrameType.NOTES
    assert bytes.fromhex(V["run_frame"])[0] == FrameType.RUN


def test_tag_vector() -> None:
    tag = V["tag"]
    assert feed_tag(bytes.fromhex(tag["feed_hex"]), bytes.fromhex(tag["salt_hex"])) == tag["tag"]


notes = st.builds(
    Note,
    st.integers(0, 2**40),
    st.booleans(),
    st.integers(0, 2**40),
    st.integers(-1, 2**40),
)


@given(notes)
def test_note_round_trip(note: Note) -> None:
    data = encode_note(note)
    assert decode_note(data + b"\x00", 0) == (note, len(data))


@given(st.integers(0, 2**20), st.lists(st.integers(0, 2**32 - 1), unique=True, max_size=50))
def test_define_round_trip(start: int, tags: list[int]) -> None:
    tags.sort()
    assert decode_define(encode_define(start, tags)) == (start, tags)


@given(st.integers(1, 2**30), st.binary(max_size=40), st.integers(0, 2**20))
def test_entry_frame_round_trip(seq: int, body: bytes, ref: int) -> None:
    assert decode_entry_frame(encode_entry_frame(ref, seq, body)) == (ref, seq, body)


@given(st.binary(max_size=60))
def test_frame_decoders_raise_only_decode_error(data: bytes) -> None:
    frame = b"\x00" + data
    for decoder in (
        decode_hello,
        decode_define,
        decode_define_key,
        decode_indexes,
        decode_entry_frame,
        decode_peer_memory,
    ):
        with contextlib.suppress(DecodeError):
            decoder(frame)
    with contextlib.suppress(DecodeError):
        decode_note(data, 0)


@given(
    st.lists(st.binary(min_size=32, max_size=32), max_size=5),
    st.dictionaries(st.integers(0, 1000), st.integers(0, 2**32 - 1), max_size=5),
    notes,
)
def test_peer_memory_round_trip(keys: list[bytes], unknown: dict[int, int], note: Note) -> None:
    memory = PeerMemory(epoch=b"8 bytes!", my_table=[FeedId(k) for k in keys], unknown=unknown)
    for i, key in enumerate(keys):
        memory.their_table[i * 3] = FeedId(key)
        memory.remote[FeedId(key)] = note
        memory.sent[FeedId(key)] = i - 1
        memory.pushed[FeedId(key)] = i * 2
    memory.received, memory.pushed_count = 7, 9
    assert decode_peer_memory(encode_peer_memory(memory)) == memory

"""Channel messages: known answers, round trips, and garbage gives DecodeError only."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.channel import (
    Beacon,
    EntryMessage,
    Have,
    Want,
    channel_tag,
    clock_digest,
    decode_message,
    encode_beacon,
    encode_entry_message,
    encode_have,
    encode_want,
)
from meshnode.codec.message import encode_short_entry
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId
from tests.fakes import identity, make_chain

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "channel.json").read_text())
WHO = identity(1)
SRC = bytes(WHO.feed_id[:4])
TAG = channel_tag(WHO.feed_id, DEFAULT_NETWORK_KEY)


def test_known_answers() -> None:
    chain = make_chain(WHO, 2, size=50)
    digest = clock_digest({WHO.feed_id: 2})
    assert TAG.hex() == VECTORS["tag"]
    assert encode_beacon(SRC, bytes.fromhex("b3c4a8b5"), digest).hex() == VECTORS["beacon"]
    held = encode_beacon(SRC, bytes.fromhex("b3c4a8b5"), digest, held_s=3600)
    assert held.hex() == VECTORS["beacon_held"]
    assert encode_want(SRC, [(TAG, 1, True), (TAG, 300, False)]).hex() == VECTORS["want"]
    assert encode_have(SRC, [(TAG, 2)]).hex() == VECTORS["have"]
    short = encode_entry_message(SRC, TAG, 2, encode_short_entry(chain[1]))
    assert short.hex() == VECTORS["entry_short"]
    assert len(short) == 132  # the budget in the codec docstring: 50-byte post, short form
    assert encode_entry_message(SRC, TAG, 2, chain[1].raw).hex() == VECTORS["entry_full"]


def test_vectors_decode() -> None:
    assert decode_message(bytes.fromhex(VECTORS["beacon"])) == Beacon(
        src=SRC, net=bytes.fromhex("b3c4a8b5"), digest=clock_digest({WHO.feed_id: 2})
    )
    assert decode_message(bytes.fromhex(VECTORS["beacon_held"])) == Beacon(
        src=SRC,
        net=bytes.fromhex("b3c4a8b5"),
        digest=clock_digest({WHO.feed_id: 2}),
        held_s=3600,
    )
    want = decode_message(bytes.fromhex(VECTORS["want"]))
    assert want == Want(src=SRC, wants=((TAG, 1, True), (TAG, 300, False)))
    assert decode_message(bytes.fromhex(VECTORS["have"])) == Have(src=SRC, haves=((TAG, 2),))
    entry = decode_message(bytes.fromhex(VECTORS["entry_full"]))
    assert isinstance(entry, EntryMessage)
    assert (entry.tag, entry.seq) == (TAG, 2)


def test_tags_differ_by_network_and_digest_by_clock() -> None:
    other = channel_tag(WHO.feed_id, bytes(32))
    assert other != TAG
    assert clock_digest({WHO.feed_id: 1}) != clock_digest({WHO.feed_id: 2})
    feeds = {FeedId(bytes([i]) * 32): i for i in range(1, 4)}
    assert clock_digest(feeds) == clock_digest(dict(reversed(list(feeds.items()))))


@pytest.mark.parametrize(
    "message",
    [
        b"",
        SRC,
        SRC + b"\x09",
        SRC + b"\x01" + b"\x00" * 7,
        SRC + b"\x01" + b"\x00" * 8 + b"\x00",  # held 0 is sent as no held field
        SRC + b"\x01" + b"\x00" * 8 + b"\x90",  # truncated held
        SRC + b"\x01" + b"\x00" * 8 + b"\x90\x00",  # held not minimal
        SRC + b"\x01" + b"\x00" * 8 + b"\x80\x80\x04",  # held over 65535
        SRC + b"\x01" + b"\x00" * 8 + b"\x01\x01",  # bytes after held
        SRC + b"\x02",
        SRC + b"\x02" + TAG + b"\x00",  # seq 0
        SRC + b"\x03",
        SRC + b"\x04" + TAG,
        SRC + b"\x04" + TAG + b"\x00\x10",
    ],
)
def test_malformed_messages_are_decode_errors(message: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(message)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_message_or_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)


@given(
    st.lists(
        st.tuples(st.binary(min_size=4, max_size=4), st.integers(1, 2**53 - 1), st.booleans()),
        min_size=1,
        max_size=20,
    )
)
def test_want_round_trip(wants: list[tuple[bytes, int, bool]]) -> None:
    decoded = decode_message(encode_want(SRC, wants))
    assert decoded == Want(src=SRC, wants=tuple(wants))

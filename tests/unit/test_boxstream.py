"""Box-stream: known answers, round trips, chunking, tampering, goodbye and misuse."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError, LocalProtocolError
from meshnode.secure.boxstream import (
    HEADER_BYTES,
    MAX_BODY_BYTES,
    BoxStreamDecoder,
    BoxStreamEncoder,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "boxstream.json").read_text()
)
STREAMS: list[dict[str, Any]] = VECTORS["streams"]
KEY = hashlib.sha256(b"meshnode box-stream vector key").digest()
NONCE = hashlib.sha256(b"meshnode box-stream vector nonce").digest()[:24]

bodies_st = st.lists(st.binary(min_size=1, max_size=9000), max_size=5)


def _pair(nonce: bytes = NONCE) -> tuple[BoxStreamEncoder, BoxStreamDecoder]:
    return BoxStreamEncoder(key=KEY, nonce=nonce), BoxStreamDecoder(key=KEY, nonce=nonce)


def _wire(bodies: list[bytes], *, goodbye: bool = True) -> bytes:
    encoder, _ = _pair()
    data = b"".join(encoder.encode(b) for b in bodies)
    return data + encoder.goodbye() if goodbye else data


def _pieces(body: bytes) -> list[bytes]:
    return [body[i : i + MAX_BODY_BYTES] for i in range(0, len(body), MAX_BODY_BYTES)]


def _split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("case", STREAMS, ids=[c["name"] for c in STREAMS])
def test_known_answer_streams(case: dict[str, Any]) -> None:
    key, nonce = bytes.fromhex(case["key_hex"]), bytes.fromhex(case["nonce_hex"])
    bodies = [bytes.fromhex(b) for b in case["bodies_hex"]]
    encoder = BoxStreamEncoder(key=key, nonce=nonce)
    wire = b"".join(encoder.encode(b) for b in bodies) + encoder.goodbye()
    assert wire.hex() == case["wire_hex"]
    decoder = BoxStreamDecoder(key=key, nonce=nonce)
    assert decoder.feed(wire) == [p for b in bodies for p in _pieces(b)]
    assert decoder.closed


def test_vector_keys_are_the_documented_ones() -> None:
    fixed = [c for c in STREAMS if "handshake" not in c["name"] and "wraps" not in c["name"]]
    assert {(c["key_hex"], c["nonce_hex"]) for c in fixed} == {(KEY.hex(), NONCE.hex())}


def test_handshake_vector_streams_use_its_outcomes() -> None:
    hs = VECTORS["handshake"]
    client_out = bytes.fromhex(hs["client_outcome_hex"])
    server_out = bytes.fromhex(hs["server_outcome_hex"])
    by_name = {c["name"]: c for c in STREAMS}
    to_server = by_name["client to server after the handshake vector"]
    to_client = by_name["server to client after the handshake vector"]
    assert bytes.fromhex(to_server["key_hex"] + to_server["nonce_hex"]) == client_out[:56]
    assert bytes.fromhex(to_client["key_hex"] + to_client["nonce_hex"]) == server_out[:56]
    # What one side encrypts with, the other decrypts with.
    assert client_out[56:] == server_out[:56]


def test_wire_layout_and_budget() -> None:
    body = bytes(10_000)
    wire = _wire([body], goodbye=False)
    assert len(wire) == 10_000 + 3 * HEADER_BYTES == 10_102
    assert HEADER_BYTES == 34
    assert len(_wire([])) == HEADER_BYTES
    _, decoder = _pair()
    assert [len(b) for b in decoder.feed(wire)] == [4096, 4096, 1808]


def test_empty_body_sends_nothing() -> None:
    encoder, _ = _pair()
    assert encoder.encode(b"") == b""
    assert encoder.goodbye() == _wire([])


def test_nonce_wraps_around() -> None:
    encoder, decoder = _pair(b"\xff" * 24)
    wire = encoder.encode(b"x") + encoder.encode(b"y") + encoder.goodbye()
    assert decoder.feed(wire) == [b"x", b"y"]
    assert decoder.closed


@given(bodies=bodies_st)
def test_round_trip(bodies: list[bytes]) -> None:
    _, decoder = _pair()
    out = decoder.feed(_wire(bodies))
    assert b"".join(out) == b"".join(bodies)
    assert out == [p for b in bodies for p in _pieces(b)]
    assert all(1 <= len(p) <= MAX_BODY_BYTES for p in out)
    assert decoder.closed
    assert decoder.buffered_bytes == 0


@given(bodies=bodies_st, cuts=st.lists(st.integers(0, 50_000), max_size=30))
def test_chunking_does_not_matter(bodies: list[bytes], cuts: list[int]) -> None:
    wire = _wire(bodies)
    _, decoder = _pair()
    out = [body for chunk in _split_at(wire, cuts) for body in decoder.feed(chunk)]
    assert out == [p for b in bodies for p in _pieces(b)]
    assert decoder.closed


@given(bodies=bodies_st, position=st.integers(0), mask=st.integers(1, 255))
def test_any_flipped_byte_raises_decode_error(
    bodies: list[bytes], position: int, mask: int
) -> None:
    wire = bytearray(_wire(bodies))
    wire[position % len(wire)] ^= mask
    _, decoder = _pair()
    with pytest.raises(DecodeError):
        decoder.feed(bytes(wire))
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"")


@given(bodies=bodies_st, keep=st.integers(0))
def test_truncated_stream_never_says_goodbye(bodies: list[bytes], keep: int) -> None:
    wire = _wire(bodies)
    _, decoder = _pair()
    out = decoder.feed(wire[: keep % len(wire)])
    assert not decoder.closed
    assert b"".join(bodies).startswith(b"".join(out))


@given(garbage=st.binary(max_size=5000))
def test_garbage_gives_only_decode_error(garbage: bytes) -> None:
    _, decoder = _pair()
    with contextlib.suppress(DecodeError):
        assert decoder.feed(garbage) == []


def test_wrong_key_or_nonce_fails() -> None:
    wire = _wire([b"secret"])
    with pytest.raises(DecodeError, match="header"):
        BoxStreamDecoder(key=bytes(32), nonce=NONCE).feed(wire)
    with pytest.raises(DecodeError, match="header"):
        BoxStreamDecoder(key=KEY, nonce=bytes(24)).feed(wire)


def test_reordered_packets_fail() -> None:
    encoder, decoder = _pair()
    first, second = encoder.encode(b"one"), encoder.encode(b"two")
    with pytest.raises(DecodeError):
        decoder.feed(second + first)


def _header(plain: bytes, nonce: bytes = NONCE) -> bytes:
    return nacl.bindings.crypto_secretbox(plain, nonce, KEY)


@pytest.mark.parametrize("length", [0, MAX_BODY_BYTES + 1, 65535])
def test_authentic_header_with_bad_length_fails(length: int) -> None:
    _, decoder = _pair()
    with pytest.raises(DecodeError, match="body length"):
        decoder.feed(_header(length.to_bytes(2, "big") + b"\x01" * 16))


def test_data_after_goodbye_fails_in_same_or_later_chunk() -> None:
    _, decoder = _pair()
    with pytest.raises(DecodeError, match="after goodbye"):
        decoder.feed(_wire([b"a"]) + b"x")
    _, decoder = _pair()
    assert decoder.feed(_wire([b"a"])) == [b"a"]
    assert decoder.feed(b"") == []
    with pytest.raises(DecodeError, match="after goodbye"):
        decoder.feed(b"x")


def test_encoder_misuse() -> None:
    encoder, _ = _pair()
    encoder.goodbye()
    assert encoder.closed
    with pytest.raises(LocalProtocolError):
        encoder.encode(b"late")
    with pytest.raises(LocalProtocolError):
        encoder.goodbye()


def test_bad_key_or_nonce_size() -> None:
    with pytest.raises(ValueError, match="key"):
        BoxStreamEncoder(key=b"short", nonce=NONCE)
    with pytest.raises(ValueError, match="nonce"):
        BoxStreamDecoder(key=KEY, nonce=b"short")

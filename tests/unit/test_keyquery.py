"""Key query: known answers, telling it from an shs1 hello, and answers that do not open."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.keyquery import (
    ANSWER_BYTES,
    QUERY_BYTES,
    Opening,
    answer_key_query,
    classify_opening,
    decode_key_answer,
    encode_key_query,
)
from meshnode.secure.shs import HELLO_BYTES, ClientHandshake
from meshnode.types import PeerId
from tests.fakes import identity

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "keyquery.json").read_text()
)
CASES: list[dict[str, Any]] = VECTORS["cases"]
NONCE = bytes(range(32))
SERVER = PeerId(Identity(bytes([7]) * 32).feed_id)
OTHER_KEY = hashlib.sha256(b"meshnode test network 2").digest()


def hello(network_key: bytes) -> bytes:
    """A real shs1 client hello under ``network_key``."""
    client = ClientHandshake(
        identity=identity(1),
        server=PeerId(identity(2).feed_id),
        network_key=network_key,
        ephemeral_secret=bytes([9]) * 32,
    )
    return client.start()


def test_vector_inputs_are_the_documented_ones() -> None:
    assert bytes.fromhex(VECTORS["nonce_hex"]) == NONCE
    assert bytes.fromhex(VECTORS["server_seed_hex"]) == bytes([7]) * 32
    assert bytes.fromhex(VECTORS["server_key_hex"]) == SERVER
    keys = [bytes.fromhex(c["network_key_hex"]) for c in CASES]
    assert keys == [DEFAULT_NETWORK_KEY, OTHER_KEY]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_key_query_vector(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["network_key_hex"])
    query = encode_key_query(key, NONCE)
    assert query.hex() == case["query_hex"]
    answer = answer_key_query(query, key, SERVER)
    assert answer.hex() == case["answer_hex"]
    stored_query = bytes.fromhex(case["query_hex"])
    stored_answer = bytes.fromhex(case["answer_hex"])
    assert classify_opening(stored_query, key) is Opening.KEY_QUERY
    assert decode_key_answer(stored_answer, stored_query, key) == SERVER


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_query_follows_the_documented_layout(case: dict[str, Any]) -> None:
    # Spec from the module docstring, computed with the stdlib: hmac_Q(nonce) || nonce.
    key = bytes.fromhex(case["network_key_hex"])
    q = hashlib.sha256(b"meshnode key query v1" + key).digest()
    mac = hmac.new(q, NONCE, hashlib.sha512).digest()[:32]
    assert bytes.fromhex(case["query_hex"]) == mac + NONCE


def test_sizes() -> None:
    query = encode_key_query(DEFAULT_NETWORK_KEY)
    assert (QUERY_BYTES, ANSWER_BYTES) == (64, 48)
    assert len(query) == QUERY_BYTES == HELLO_BYTES
    assert len(answer_key_query(query, DEFAULT_NETWORK_KEY, SERVER)) == ANSWER_BYTES


def test_random_nonces_differ() -> None:
    first, second = encode_key_query(DEFAULT_NETWORK_KEY), encode_key_query(DEFAULT_NETWORK_KEY)
    assert first[32:] != second[32:]
    assert classify_opening(first, DEFAULT_NETWORK_KEY) is Opening.KEY_QUERY


@pytest.mark.parametrize("size", [0, 31, 33])
def test_nonce_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="nonce must be 32 bytes"):
        encode_key_query(DEFAULT_NETWORK_KEY, bytes(size))


@pytest.mark.parametrize("key", [DEFAULT_NETWORK_KEY, OTHER_KEY])
def test_classify_shs1_hello_and_key_query(key: bytes) -> None:
    assert classify_opening(hello(key), key) is Opening.HANDSHAKE
    assert classify_opening(encode_key_query(key, NONCE), key) is Opening.KEY_QUERY


def test_another_network_key_is_unknown() -> None:
    assert classify_opening(hello(OTHER_KEY), DEFAULT_NETWORK_KEY) is Opening.UNKNOWN
    query = encode_key_query(OTHER_KEY, NONCE)
    assert classify_opening(query, DEFAULT_NETWORK_KEY) is Opening.UNKNOWN


@pytest.mark.parametrize("message", [bytes(64), b"\xff" * 64, bytes(range(64))])
def test_other_64_bytes_are_unknown(message: bytes) -> None:
    assert classify_opening(message, DEFAULT_NETWORK_KEY) is Opening.UNKNOWN


def test_a_flipped_bit_is_unknown() -> None:
    for message in (hello(DEFAULT_NETWORK_KEY), encode_key_query(DEFAULT_NETWORK_KEY, NONCE)):
        for i in (0, 31, 32, 63):
            bad = bytearray(message)
            bad[i] ^= 1
            assert classify_opening(bytes(bad), DEFAULT_NETWORK_KEY) is Opening.UNKNOWN


@pytest.mark.parametrize("cut", [0, 1, 63])
def test_wrong_lengths_are_unknown(cut: int) -> None:
    for message in (hello(DEFAULT_NETWORK_KEY), encode_key_query(DEFAULT_NETWORK_KEY, NONCE)):
        assert classify_opening(message[:cut], DEFAULT_NETWORK_KEY) is Opening.UNKNOWN
        assert classify_opening(message + b"\x00", DEFAULT_NETWORK_KEY) is Opening.UNKNOWN


@given(
    nonce=st.binary(min_size=32, max_size=32),
    server=st.binary(min_size=32, max_size=32).map(PeerId),
    key=st.sampled_from([DEFAULT_NETWORK_KEY, OTHER_KEY]),
)
def test_answer_round_trips(nonce: bytes, server: PeerId, key: bytes) -> None:
    query = encode_key_query(key, nonce)
    assert classify_opening(query, key) is Opening.KEY_QUERY
    assert decode_key_answer(answer_key_query(query, key, server), query, key) == server


def test_answer_to_another_query_does_not_open() -> None:
    query = encode_key_query(DEFAULT_NETWORK_KEY, NONCE)
    other = encode_key_query(DEFAULT_NETWORK_KEY, bytes(32))
    answer = answer_key_query(other, DEFAULT_NETWORK_KEY, SERVER)
    with pytest.raises(DecodeError, match=r"^key answer does not open: another network key\?$"):
        decode_key_answer(answer, query, DEFAULT_NETWORK_KEY)


def test_answer_under_another_network_key_does_not_open() -> None:
    query = encode_key_query(DEFAULT_NETWORK_KEY, NONCE)
    answer = answer_key_query(query, OTHER_KEY, SERVER)
    with pytest.raises(DecodeError, match="does not open"):
        decode_key_answer(answer, query, DEFAULT_NETWORK_KEY)


def test_tampered_answer_does_not_open() -> None:
    case = CASES[0]
    answer = bytearray.fromhex(case["answer_hex"])
    answer[-1] ^= 0x80
    with pytest.raises(DecodeError, match="does not open"):
        decode_key_answer(bytes(answer), bytes.fromhex(case["query_hex"]), DEFAULT_NETWORK_KEY)


@pytest.mark.parametrize("size", [0, 47, 49, 64])
def test_answer_of_wrong_length(size: int) -> None:
    query = encode_key_query(DEFAULT_NETWORK_KEY, NONCE)
    with pytest.raises(DecodeError, match=f"^key answer must be 48 bytes, got {size}$"):
        decode_key_answer(bytes(size), query, DEFAULT_NETWORK_KEY)


@given(message=st.binary(max_size=80), key=st.binary(min_size=32, max_size=32))
def test_classify_any_bytes(message: bytes, key: bytes) -> None:
    assert classify_opening(message, key) in set(Opening)


@given(
    answer=st.one_of(st.binary(max_size=64), st.binary(min_size=48, max_size=48)),
    query=st.one_of(st.just(bytes.fromhex(CASES[0]["query_hex"])), st.binary(max_size=80)),
)
def test_decode_any_answer_gives_a_key_or_decode_error(answer: bytes, query: bytes) -> None:
    try:
        key = decode_key_answer(answer, query, DEFAULT_NETWORK_KEY)
    except DecodeError:
        return
    assert len(key) == 32

"""ENCKEY and the private inner: known answers, refusals, and the decoder contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.content import (
    MAX_HOMES,
    EncKey,
    PrivateInner,
    decode_enckey,
    decode_private_inner,
    encode_enckey,
    encode_private_inner,
    recipient_tag,
)
from meshnode.codec.message import ContentType, decode_entry
from meshnode.core.views import entry_json
from meshnode.errors import DecodeError
from meshnode.types import FeedId
from tests.fakes import identity

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "private.json").read_text()
)
KEY = bytes.fromhex(VECTORS["keys"][0]["public_hex"])
TAG = recipient_tag(identity(2).feed_id)


def test_content_type_codes_are_frozen() -> None:
    assert (ContentType.PRIVATE, ContentType.ENCKEY) == (5, 6)


@pytest.mark.parametrize("case", VECTORS["enckeys"], ids=lambda c: str(c["generation"]))
def test_enckey_vectors(case: dict[str, Any]) -> None:
    enckey = EncKey(
        key=bytes.fromhex(case["key_hex"]),
        generation=case["generation"],
        homes=tuple(FeedId(bytes.fromhex(h)) for h in case["homes_hex"]),
    )
    assert encode_enckey(enckey).hex() == case["content_hex"]
    assert decode_enckey(bytes.fromhex(case["content_hex"])) == enckey


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"key": bytes(32)}, "low-order"),
        ({"key": KEY[:31]}, "32-byte"),
        ({"generation": 1 << 32}, "generation"),
        ({"generation": -1}, "generation"),
        ({"homes": tuple(identity(n).feed_id for n in range(MAX_HOMES + 1))}, "0 to 3 distinct"),
        ({"homes": (identity(3).feed_id,) * 2}, "0 to 3 distinct"),
        ({"homes": (FeedId(bytes(31)),)}, "32-byte feed id"),
    ],
)
def test_encode_enckey_refuses_out_of_bounds(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_enckey(EncKey(**{"key": KEY, "generation": 0, **change}))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "usable 32-byte X25519 key"),
        (bytes(32) + b"\x00", "usable 32-byte X25519 key"),
        (KEY, "truncated varint"),
        (KEY + b"\x80\x00", "not minimally encoded"),
        (KEY + b"\x80\x80\x80\x80\x10", "over 4294967295"),
        (KEY + b"\x00" + bytes(31), "0 to 3 feed ids"),
        (KEY + b"\x00" + bytes(32 * 4), "0 to 3 feed ids"),
        (KEY + b"\x00" + bytes(32) * 2, "a home twice"),
    ],
)
def test_decode_enckey_refuses_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode_enckey(data)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "POST or REPLY"),
        (b"\x01", "POST or REPLY"),
        (b"\x02\x01" + TAG, "POST or REPLY"),
        (b"\x01\x00", "1 to 7 recipients"),
        (b"\x01\x08" + TAG * 8, "1 to 7 recipients"),
        (b"\x01\x02" + TAG, "shorter than its recipient tags"),
        (b"\x01\x01" + TAG + b"\xff", "not valid UTF-8"),
        (b"\x03\x01" + TAG + bytes(31), "parent id"),
    ],
)
def test_decode_private_inner_refuses_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode_private_inner(data)


@pytest.mark.parametrize(
    ("inner", "problem"),
    [
        (PrivateInner(content_type=ContentType.ABOUT, recipient_tags=(TAG,), payload=b""), "POST"),
        (PrivateInner(content_type=ContentType.POST, recipient_tags=(), payload=b""), "1 to 7"),
        (PrivateInner(content_type=ContentType.POST, recipient_tags=(TAG,) * 8, payload=b""), "1"),
        (PrivateInner(content_type=ContentType.POST, recipient_tags=(TAG[:7],), payload=b""), "8"),
    ],
)
def test_encode_private_inner_refuses_out_of_bounds(inner: PrivateInner, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_private_inner(inner)


@given(st.binary(max_size=200))
def test_decoders_return_or_raise_decode_error(data: bytes) -> None:
    for decode in (decode_enckey, decode_private_inner):
        try:
            decode(data)
        except DecodeError:
            continue  # the contract: a value or DecodeError, nothing else


def test_views_name_the_new_types() -> None:
    case = VECTORS["messages"][0]["entry"]
    view = entry_json(decode_entry(bytes.fromhex(case["full_hex"])))
    assert view["type"] == "private"
    assert "text" not in view

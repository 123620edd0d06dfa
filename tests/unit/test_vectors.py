"""Known-answer vectors: a changed vector means a new protocol version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshnode.codec.message import (
    FORMAT_VERSION,
    decode_entry,
    decode_short_entry,
    encode_short_entry,
    short_form,
)
from meshnode.codec.varint import decode_varint, encode_varint
from meshnode.core.feed import check_content
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, network_tag
from meshnode.types import FeedId, MsgId, Seq
from tests.fakes import entry_from_vector

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "entries.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["entries"]


def test_format_version_and_default_network_are_frozen() -> None:
    assert VECTORS["format_version"] == FORMAT_VERSION
    assert DEFAULT_NETWORK_KEY.hex() == VECTORS["default_network_key_hex"]
    assert network_tag(DEFAULT_NETWORK_KEY) == VECTORS["default_network_tag"]


@pytest.mark.parametrize(("value", "hex_"), VECTORS["varints"].items())
def test_varint_vectors(value: str, hex_: str) -> None:
    assert encode_varint(int(value)).hex() == hex_
    assert decode_varint(bytes.fromhex(hex_)) == (int(value), len(hex_) // 2)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_entry_vector_decodes_and_verifies(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["full_hex"])
    key = bytes.fromhex(case["network_key_hex"])
    entry = decode_entry(raw)
    check_content(entry, key, 8192)
    assert entry.id.hex() == case["id_hex"]
    assert format_feed_id(entry.author) == case["author_text"]
    assert entry.seq == case["seq"]
    assert entry.timestamp_ms == case["timestamp_ms"]
    assert entry.compressed == case["compressed"]
    assert entry.plain_content().hex() == case["content_plain_hex"]
    assert encode_short_entry(entry).hex() == case["short_hex"]
    assert short_form(raw, case["seq"]).hex() == case["short_hex"]  # without decoding
    previous = bytes.fromhex(case["previous_hex"]) if case["previous_hex"] else None
    rebuilt = decode_short_entry(
        bytes.fromhex(case["short_hex"]),
        author=FeedId(entry.author),
        seq=Seq(case["seq"]),
        previous=MsgId(previous) if previous else None,
    )
    assert rebuilt.raw == raw


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c["compressed"]], ids=lambda c: str(c["name"])
)
def test_entry_vector_encodes_exactly(case: dict[str, Any]) -> None:
    entry = entry_from_vector(case)
    assert entry.raw.hex() == case["full_hex"]


def test_fifty_byte_post_short_form_fits_budget() -> None:
    case = CASES[0]
    assert len(bytes.fromhex(case["content_plain_hex"])) == 50
    assert len(bytes.fromhex(case["short_hex"])) <= 128

"""REPLY and ABOUT contents: known answers, budgets, and garbage giving DecodeError only."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.content import (
    MAX_DESCRIPTION_BYTES,
    MAX_NAME_BYTES,
    About,
    Reply,
    decode_about,
    decode_reply,
    encode_about,
    encode_reply,
)
from meshnode.codec.message import ContentType, decode_entry, encode_short_entry
from meshnode.core.feed import check_content
from meshnode.core.views import entry_json
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_msg_id
from meshnode.types import MsgId
from tests.fakes import entry_from_vector

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "content.json").read_text()
)
LORA_ENTRY_BUDGET = 154  # a 50-byte post's short form (122) plus the 32-byte parent


def test_reply_vector() -> None:
    case = VECTORS["reply"]
    reply = Reply(parent=MsgId(bytes.fromhex(case["parent_hex"])), text=case["text"])
    assert encode_reply(reply).hex() == case["content_hex"]
    assert decode_reply(bytes.fromhex(case["content_hex"])) == reply


@pytest.mark.parametrize("name", ["about", "about_name_only"])
def test_about_vectors(name: str) -> None:
    case = VECTORS[name]
    about = About(name=case["name"], description=case["description"])
    assert encode_about(about).hex() == case["content_hex"]
    assert decode_about(bytes.fromhex(case["content_hex"])) == about


@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["name"])
def test_entry_vectors_encode_exactly_and_check(case: dict[str, Any]) -> None:
    entry = entry_from_vector(case)
    assert entry.raw.hex() == case["full_hex"]
    assert encode_short_entry(entry).hex() == case["short_hex"]
    assert entry.id.hex() == case["id_hex"]
    check_content(decode_entry(entry.raw), DEFAULT_NETWORK_KEY, 8192)


def test_a_reply_with_fifty_bytes_of_text_fits_one_lora_frame() -> None:
    reply = next(c for c in VECTORS["entries"] if c["content_type"] == ContentType.REPLY)
    assert len(bytes.fromhex(reply["short_hex"])) <= LORA_ENTRY_BUDGET


def test_views_show_replies_and_abouts() -> None:
    reply_case, about_case = VECTORS["reply"], VECTORS["about"]
    for case in VECTORS["entries"]:
        view = entry_json(decode_entry(bytes.fromhex(case["full_hex"])))
        if case["content_type"] == ContentType.REPLY:
            assert view["type"] == "reply"
            assert view["text"] == reply_case["text"]
            parent = MsgId(bytes.fromhex(reply_case["parent_hex"]))
            assert view["parent"] == format_msg_id(parent)
        else:
            assert view["type"] == "about"
            about = {"name": about_case["name"], "description": about_case["description"]}
            assert view["about"] == about


@pytest.mark.parametrize(
    "about",
    [
        About(name=""),
        About(name="   "),
        About(name="x" * (MAX_NAME_BYTES + 1)),
        About(name="ok", description="d" * (MAX_DESCRIPTION_BYTES + 1)),
    ],
)
def test_an_about_out_of_bounds_is_refused(about: About) -> None:
    with pytest.raises(ValueError, match=r"name|description"):
        encode_about(about)


@given(st.binary(max_size=1200))
def test_garbage_gives_decode_error_only(data: bytes) -> None:
    for decode in (decode_reply, decode_about):
        with contextlib.suppress(DecodeError):
            decode(data)


@given(
    name=st.text(min_size=1, max_size=20).filter(lambda n: n.strip()),
    description=st.text(max_size=200),
    text=st.text(max_size=300),
    parent=st.binary(min_size=32, max_size=32),
)
def test_round_trips(name: str, description: str, text: str, parent: bytes) -> None:
    about = About(name=name, description=description)
    assert decode_about(encode_about(about)) == about
    reply = Reply(parent=MsgId(parent), text=text)
    assert decode_reply(encode_reply(reply)) == reply

"""The rtnetlink parser against datagrams a kernel sent, and against garbage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.links.netlink import InterfaceChanged, MessageType, decode_rtnetlink

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "rtnetlink.json").read_text())
GOOD: list[dict[str, Any]] = VECTORS["datagrams"]
BAD: list[dict[str, Any]] = VECTORS["malformed"]

# Netlink is in host byte order; the vectors are a little-endian kernel's.
pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="little-endian vectors")


@pytest.mark.parametrize("case", GOOD, ids=[c["name"] for c in GOOD])
def test_a_kernel_datagram_tells_its_changes(case: dict[str, Any]) -> None:
    expected = [
        InterfaceChanged(kind=MessageType[kind], index=index, family=family)
        for kind, index, family in case["changes"]
    ]
    assert decode_rtnetlink(bytes.fromhex(case["hex"])) == expected


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_a_malformed_datagram_raises_decode_error(case: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match="rtnetlink"):
        decode_rtnetlink(bytes.fromhex(case["hex"]))


def test_nothing_is_no_change() -> None:
    assert decode_rtnetlink(b"") == []


@given(st.binary(max_size=200))
def test_garbage_gives_changes_or_decode_error(data: bytes) -> None:
    try:
        changes = decode_rtnetlink(data)
    except DecodeError:
        return
    assert all(isinstance(change.kind, MessageType) for change in changes)


@given(st.lists(st.sampled_from([bytes.fromhex(c["hex"]) for c in GOOD]), max_size=4))
def test_joined_datagrams_tell_each_change_in_order(parts: list[bytes]) -> None:
    assert decode_rtnetlink(b"".join(parts)) == [
        change for part in parts for change in decode_rtnetlink(part)
    ]

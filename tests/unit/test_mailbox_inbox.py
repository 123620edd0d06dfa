"""The quick look at an entry's content type that finds private entries without decoding."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.message import create_entry, encode_short_entry
from meshnode.core.inbox import entry_content_type, is_private, key_fingerprint
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import MsgId, Seq
from tests.fakes import identity


@given(
    seq=st.integers(1, (1 << 53) - 1),
    timestamp_ms=st.integers(0, 1 << 50),
    content_type=st.integers(0, 1 << 20),
    content=st.binary(max_size=200),
)
def test_the_look_agrees_with_decoding(
    seq: int, timestamp_ms: int, content_type: int, content: bytes
) -> None:
    entry = create_entry(
        identity(1),
        DEFAULT_NETWORK_KEY,
        seq=Seq(seq),
        previous=None if seq == 1 else MsgId(bytes(32)),
        timestamp_ms=timestamp_ms,
        content_type=content_type,
        content=content,
    )
    assert entry_content_type(entry.raw) == content_type
    assert is_private(entry.raw) == (content_type == 5)
    assert not is_private(encode_short_entry(entry))  # only full forms are looked at


@given(st.binary(max_size=120))
def test_garbage_gives_decode_error_or_a_number(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert entry_content_type(data) >= 0
    assert is_private(data) in (True, False)


def test_a_fingerprint_is_short_and_differs_per_key() -> None:
    one, two = key_fingerprint(bytes(32)), key_fingerprint(bytes(31) + b"\x01")
    assert len(one) == 19
    assert one.count(" ") == 3
    assert one != two

"""Stream framing: any chunking gives the same frames; bad lengths give DecodeError."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.transports.framing import StreamDeframer, encode_stream_frame


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(
    frames=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    cuts=st.lists(st.integers(0, 4096), max_size=12),
)
def test_deframer_ignores_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_stream_frame(f) for f in frames)
    deframer = StreamDeframer()
    assert [f for chunk in split_at(wire, cuts) for f in deframer.feed(chunk)] == frames
    assert deframer.buffered == 0


def test_known_answer() -> None:
    assert encode_stream_frame(b"\x04ab").hex() == "030461" + "62"
    assert encode_stream_frame(bytes(200))[:2].hex() == "c801"


def test_oversized_length_is_refused_before_buffering() -> None:
    deframer = StreamDeframer(max_frame_bytes=100)
    with pytest.raises(DecodeError, match="outside"):
        deframer.feed(bytes.fromhex("e807") + b"x")  # claims 1000 bytes


def test_zero_length_is_refused() -> None:
    with pytest.raises(DecodeError):
        StreamDeframer().feed(b"\x00")


@given(st.binary(max_size=64))
def test_garbage_gives_frames_or_decode_error(data: bytes) -> None:
    deframer = StreamDeframer(max_frame_bytes=1000)
    try:
        frames = deframer.feed(data)
    except DecodeError:
        return
    assert all(0 < len(f) <= 1000 for f in frames)

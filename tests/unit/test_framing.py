"""Stream framing: any chunking gives the same frames; bad lengths give DecodeError."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.frame import FrameType
from meshnode.codec.framing import (
    LINK_CONTROL,
    LinkControl,
    StreamDeframer,
    decode_link_control,
    encode_link_control,
    encode_stream_frame,
)
from meshnode.errors import DecodeError


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


# -- link control frames: PING / PONG --------------------------------------------------------


def test_link_control_known_answer() -> None:
    assert encode_link_control(LinkControl.PING, b"\x01" * 8).hex() == "0001" + "01" * 8
    assert encode_link_control(LinkControl.PONG, bytes(range(8))).hex() == "00020001020304050607"


def test_link_control_codes_are_frozen() -> None:
    assert (LINK_CONTROL, int(LinkControl.PING), int(LinkControl.PONG)) == (0, 1, 2)


def test_no_replication_frame_type_is_link_control() -> None:
    assert LINK_CONTROL not in {int(t) for t in FrameType}
    assert all(t != LINK_CONTROL for t in FrameType)


@given(kind=st.sampled_from(LinkControl), token=st.binary(min_size=8, max_size=8))
def test_link_control_round_trips(kind: LinkControl, token: bytes) -> None:
    frame = encode_link_control(kind, token)
    assert len(frame) == 10
    assert frame[0] == LINK_CONTROL
    decoded_kind, decoded_token = decode_link_control(frame)
    assert decoded_kind is kind
    assert decoded_token == token


@pytest.mark.parametrize("size", [0, 7, 9])
def test_link_control_token_must_be_8_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="token must be 8 bytes"):
        encode_link_control(LinkControl.PING, bytes(size))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "not a link control frame"),
        (b"\x00", "link control frame of 1 bytes, expected 10"),
        (b"\x00\x01" + bytes(7), "link control frame of 9 bytes, expected 10"),
        (b"\x00\x01" + bytes(9), "link control frame of 11 bytes, expected 10"),
        (b"\x00\x00" + bytes(8), "unknown link control kind 0"),
        (b"\x00\x03" + bytes(8), "unknown link control kind 3"),
        (b"\x00\xff" + bytes(8), "unknown link control kind 255"),
    ],
)
def test_malformed_link_control_is_refused(frame: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_link_control(frame)
    assert str(info.value) == message


@pytest.mark.parametrize("first", [0x01, 0x06, 0x80, 0xFF])
def test_link_control_first_byte_must_be_zero(first: int) -> None:
    # The message is not pinned: for a 10-byte frame it reads "of 10 bytes, expected 10".
    with pytest.raises(DecodeError):
        decode_link_control(bytes((first, LinkControl.PING)) + bytes(8))


@given(st.binary(max_size=16))
def test_link_control_garbage_gives_decode_error(data: bytes) -> None:
    try:
        kind, token = decode_link_control(data)
    except DecodeError:
        return
    assert data == bytes((0, kind)) + token
    assert len(token) == 8

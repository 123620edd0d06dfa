"""KISS framing: known answers, round trips, chunking, and noise that never raises."""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.radio.kiss import (
    FEND,
    FESC,
    TFEND,
    TFESC,
    KissCommand,
    KissDecoder,
    KissDropReason,
    KissFrame,
    encode_kiss,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "kiss.json").read_text())
FRAME_CASES: list[dict[str, Any]] = VECTORS["frames"]
STREAM_CASES: list[dict[str, Any]] = VECTORS["streams"]
MODULE = Path(__file__).resolve().parents[2] / "meshnode" / "radio" / "kiss.py"


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def feed_all(decoder: KissDecoder, chunks: list[bytes]) -> list[KissFrame]:
    return [frame for chunk in chunks for frame in decoder.feed(chunk)]


def decoder_state(decoder: KissDecoder) -> tuple[dict[str, int], int, int]:
    return {str(k): v for k, v in decoder.dropped.items()}, decoder.skipped_bytes, decoder.buffered


# Type bytes encode_kiss accepts: every (port, command) nibble pair but 0xFF, and RETURN.
types = st.one_of(
    st.tuples(st.integers(0, 15), st.integers(0, 15)).filter(lambda pc: pc != (15, 15)),
    st.just((0, int(KissCommand.RETURN))),
)
# Noisy lines: random bytes with the special bytes and escape pairs made common.
noisy = st.lists(
    st.one_of(
        st.binary(max_size=24),
        st.sampled_from([b"\xc0", b"\xdb", b"\xdb\xdc", b"\xdb\xdd", b"\xc0\x00"]),
    ),
    max_size=24,
).map(b"".join)


# -- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", FRAME_CASES, ids=[c["name"] for c in FRAME_CASES])
def test_frame_vector_encodes_exactly(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["data_hex"])
    assert encode_kiss(data, command=case["command"], port=case["port"]).hex() == case["wire_hex"]


@pytest.mark.parametrize("case", FRAME_CASES, ids=[c["name"] for c in FRAME_CASES])
def test_frame_vector_decodes(case: dict[str, Any]) -> None:
    frame = KissFrame(
        port=case["port"], command=case["command"], data=bytes.fromhex(case["data_hex"])
    )
    assert KissDecoder(508).feed(bytes.fromhex(case["wire_hex"])) == [frame]


@pytest.mark.parametrize("case", STREAM_CASES, ids=[c["name"] for c in STREAM_CASES])
def test_stream_vector(case: dict[str, Any]) -> None:
    wire = bytes.fromhex(case["wire_hex"])
    expected = [
        KissFrame(port=f["port"], command=f["command"], data=bytes.fromhex(f["data_hex"]))
        for f in case["frames"]
    ]
    whole = KissDecoder(case["max_frame_bytes"])
    assert whole.feed(wire) == expected
    assert decoder_state(whole) == (case["dropped"], case["skipped_bytes"], case["buffered"])
    bytewise = KissDecoder(case["max_frame_bytes"])
    assert feed_all(bytewise, [wire[i : i + 1] for i in range(len(wire))]) == expected
    assert decoder_state(bytewise) == decoder_state(whole)


def test_wire_constants_are_frozen() -> None:
    assert (FEND, FESC, TFEND, TFESC) == (0xC0, 0xDB, 0xDC, 0xDD)
    assert [int(c) for c in KissCommand] == [0, 1, 2, 3, 4, 5, 6, 0xFF]


def test_rnode_bring_up_write_from_reference() -> None:
    # radio.md 3.2: DETECT + FW_VERSION + PLATFORM + MCU in one write, FENDs shared.
    frames = [(0x08, b"\x73"), (0x50, b"\x00"), (0x48, b"\x00"), (0x49, b"\x00")]
    wire = b"".join(encode_kiss(d, command=t & 0x0F, port=t >> 4) for t, d in frames)
    shared = wire.replace(b"\xc0\xc0", b"\xc0")
    assert shared.hex() == "c00873c05000c04800c04900c0"
    decoded = KissDecoder(508).feed(shared)
    assert [(f.type_byte, f.data) for f in decoded] == frames


# -- encoder -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "port", "message"),
    [
        (0, 16, "port 16 outside 0..15"),
        (0, -1, "port -1 outside 0..15"),
        (16, 0, "command 16 outside 0..15 and not 0xFF"),
        (-1, 0, "command -1 outside"),
        (0xFF, 1, "RETURN"),
        (15, 15, "reserved for RETURN"),
    ],
)
def test_encoder_refuses_unsendable_type_bytes(command: int, port: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_kiss(b"x", command=command, port=port)


@given(data=st.binary(max_size=300), kind=types)
def test_encoding_stays_within_budget(data: bytes, kind: tuple[int, int]) -> None:
    port, command = kind
    wire = encode_kiss(data, command=command, port=port)
    body = bytes((KissFrame(port=port, command=command, data=data).type_byte,)) + data
    specials = body.count(FEND) + body.count(FESC)
    assert len(wire) == len(data) + 3 + specials
    assert len(wire) <= 2 * (len(data) + 1) + 2
    assert wire[0] == wire[-1] == FEND
    assert FEND not in wire[1:-1]


# -- decoder ---------------------------------------------------------------------------------


@given(frames=st.lists(st.tuples(types, st.binary(max_size=300)), max_size=8))
def test_round_trip(frames: list[tuple[tuple[int, int], bytes]]) -> None:
    expected = [KissFrame(port=p, command=c, data=d) for (p, c), d in frames]
    wire = b"".join(encode_kiss(f.data, command=f.command, port=f.port) for f in expected)
    decoder = KissDecoder(300)
    assert decoder.feed(wire) == expected
    assert decoder_state(decoder) == ({}, 0, 0)


@given(
    frames=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(0, 4096), max_size=12),
)
def test_round_trip_ignores_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_kiss(f) for f in frames)
    decoder = KissDecoder(300)
    assert [f.data for f in feed_all(decoder, split_at(wire, cuts))] == frames
    assert decoder.buffered == 0


@given(wire=noisy, cuts=st.lists(st.integers(0, 1024), max_size=12))
def test_noise_ignores_chunking(wire: bytes, cuts: list[int]) -> None:
    whole = KissDecoder(16)
    chunked = KissDecoder(16)
    assert feed_all(chunked, split_at(wire, cuts)) == whole.feed(wire)
    assert decoder_state(chunked) == decoder_state(whole)


@given(wire=st.one_of(noisy, st.binary(max_size=512)), max_frame_bytes=st.integers(0, 64))
def test_garbage_never_raises_nor_yields_more_than_it_could(
    wire: bytes, max_frame_bytes: int
) -> None:
    decoder = KissDecoder(max_frame_bytes)
    frames = decoder.feed(wire)
    fends = wire.count(FEND)
    assert len(frames) <= max(0, fends - 1)
    assert sum(1 + len(f.data) for f in frames) <= len(wire) - fends
    assert all(len(f.data) <= max_frame_bytes for f in frames)
    assert all(0 <= f.port <= 15 and (0 <= f.command <= 15 or f.command == 0xFF) for f in frames)
    assert decoder.buffered <= max_frame_bytes + 1


def reference_decode(wire: bytes, max_frame_bytes: int) -> tuple[list[KissFrame], dict[str, int]]:
    """The streaming rules one byte at a time: the oracle for the segment-wise decoder."""
    frames: list[KissFrame] = []
    dropped: dict[str, int] = {}
    buf: bytearray | None = None  # None while hunting for a FEND
    escaped = False
    for byte in wire:
        if buf is None:
            if byte == FEND:
                buf, escaped = bytearray(), False
            continue
        reason = None
        if escaped:
            escaped = False
            if byte not in (TFEND, TFESC):
                reason = "bad_escape"
            else:
                buf.append(FEND if byte == TFEND else FESC)
        elif byte == FEND:
            if buf:
                kind = buf[0]
                port, command = (0, 0xFF) if kind == 0xFF else (kind >> 4, kind & 0x0F)
                frames.append(KissFrame(port=port, command=command, data=bytes(buf[1:])))
            buf = bytearray()
            continue
        elif byte == FESC:
            escaped = True
        else:
            buf.append(byte)
        if reason is None and len(buf) > max_frame_bytes + 1:
            reason = "oversize"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            buf = bytearray() if byte == FEND else None
    return frames, dropped


@given(wire=st.one_of(noisy, st.binary(max_size=256)), max_frame_bytes=st.integers(0, 32))
def test_decoder_matches_bytewise_reference(wire: bytes, max_frame_bytes: int) -> None:
    decoder = KissDecoder(max_frame_bytes)
    frames = decoder.feed(wire)
    assert (frames, decoder_state(decoder)[0]) == reference_decode(wire, max_frame_bytes)


def test_noise_before_first_fend_is_skipped() -> None:
    decoder = KissDecoder(100)
    assert decoder.feed(b"\x00\x61\x62") == []  # no FEND yet: we may have joined mid-frame
    assert decoder.feed(b"\xc0\x00\x63\xc0") == [KissFrame(port=0, command=0, data=b"c")]
    assert decoder.skipped_bytes == 3


def test_empty_frames_are_ignored() -> None:
    decoder = KissDecoder(100)
    assert decoder.feed(b"\xc0\xc0\xc0\xc0") == []
    assert decoder_state(decoder) == ({}, 0, 0)


def test_type_byte_only_is_a_frame_with_empty_data() -> None:
    assert KissDecoder(0).feed(b"\xc0\x06\xc0") == [KissFrame(port=0, command=6, data=b"")]


def test_return_frame_decodes_as_port_zero() -> None:
    (frame,) = KissDecoder(4).feed(b"\xc0\xff\xc0")
    assert (frame.port, frame.command, frame.type_byte) == (0, KissCommand.RETURN, 0xFF)


@pytest.mark.parametrize("after", [0x00, 0x41, FESC, TFEND - 1, TFESC + 1, 0xFF])
def test_bad_escape_drops_frame_and_resyncs(after: int) -> None:
    decoder = KissDecoder(100)
    wire = b"\xc0\x00a\xdb" + bytes((after,)) + b"b\xc0\x00ok\xc0"
    assert decoder.feed(wire) == [KissFrame(port=0, command=0, data=b"ok")]
    assert decoder.dropped == {KissDropReason.BAD_ESCAPE: 1}


def test_bad_escape_in_type_byte_is_dropped() -> None:
    decoder = KissDecoder(100)
    assert decoder.feed(b"\xc0\xdb\x00\xc0\x00z\xc0") == [KissFrame(port=0, command=0, data=b"z")]
    assert decoder.dropped == {KissDropReason.BAD_ESCAPE: 1}


def test_oversize_frame_is_dropped_without_buffering_it() -> None:
    decoder = KissDecoder(100)
    assert decoder.feed(b"\xc0\x00") == []
    for _ in range(50):
        assert decoder.feed(bytes(64)) == []
        assert decoder.buffered <= 101
    assert decoder.dropped == {KissDropReason.OVERSIZE: 1}
    assert decoder.feed(b"\xc0\x00fine\xc0") == [KissFrame(port=0, command=0, data=b"fine")]


@pytest.mark.parametrize("size", [99, 100])
def test_frame_at_the_limit_is_kept(size: int) -> None:
    data = b"\xc0" * size  # escaped on the wire: the limit counts unescaped bytes
    assert KissDecoder(100).feed(encode_kiss(data)) == [KissFrame(port=0, command=0, data=data)]


def test_one_byte_over_the_limit_is_dropped() -> None:
    decoder = KissDecoder(100)
    assert decoder.feed(encode_kiss(b"\xdb" * 101)) == []
    assert decoder.dropped == {KissDropReason.OVERSIZE: 1}


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        KissDecoder(-1)


def test_module_does_no_io() -> None:
    tree = ast.parse(MODULE.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"asyncio", "socket", "serial", "threading", "time", "select"}

"""Link packets: known answers, CRC, fragmentation budget and reassembly on a shared channel."""

from __future__ import annotations

import ast
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.radio.fragment import (
    FRAGMENT_OVERHEAD_BYTES,
    MAX_FRAGMENTS,
    MIN_MTU_BYTES,
    SINGLE_OVERHEAD_BYTES,
    LinkPacket,
    Reassembler,
    ReassemblyDropReason,
    decode_link_packet,
    encode_link_packet,
    fragment,
    max_message,
    max_payload,
    reassembly_key,
)
from meshnode.radio.kiss import KissDecoder, encode_kiss

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "fragment.json").read_text())
MESSAGE_CASES: list[dict[str, Any]] = VECTORS["messages"]
REJECT_CASES: list[dict[str, Any]] = VECTORS["rejects"]
MODULE = Path(__file__).resolve().parents[2] / "meshnode" / "radio" / "fragment.py"
Drop = ReassemblyDropReason


def crc16_ccitt_false(data: bytes) -> bytes:
    """Bitwise CRC-16/CCITT-FALSE: an oracle independent of binascii."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc.to_bytes(2, "big")


def with_crc(body: bytes) -> bytes:
    return body + crc16_ccitt_false(body)


def counts(reassembler: Reassembler) -> dict[str, int]:
    return {str(k): v for k, v in reassembler.dropped.items()}


def feed_all(
    reassembler: Reassembler, sender: str, packets: list[bytes], now: float
) -> list[bytes]:
    return [m for p in packets if (m := reassembler.feed(sender, p, now)) is not None]


# -- known answers ----------------------------------------------------------------------------


def test_crc_check_value() -> None:
    check = VECTORS["crc16_ccitt_false"]
    assert crc16_ccitt_false(check["input_ascii"].encode()).hex() == check["crc_hex"] == "29b1"


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[c["name"] for c in MESSAGE_CASES])
def test_message_vector_fragments_exactly(case: dict[str, Any]) -> None:
    message = bytes.fromhex(case["message_hex"])
    packets = fragment(message, mtu_bytes=case["mtu_bytes"], message_id=case["message_id"])
    assert [p.hex() for p in packets] == case["packets_hex"]
    assert all(p[-2:] == crc16_ccitt_false(p[:-2]) for p in packets)


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[c["name"] for c in MESSAGE_CASES])
def test_message_vector_reassembles(case: dict[str, Any]) -> None:
    packets = [bytes.fromhex(h) for h in case["packets_hex"]]
    reassembler = Reassembler(max_message_bytes=10_000, timeout_s=10.0)
    assert feed_all(reassembler, "a", packets, 0.0) == [bytes.fromhex(case["message_hex"])]
    assert counts(reassembler) == {}
    assert reassembler.partials == 0


@pytest.mark.parametrize("case", REJECT_CASES, ids=[c["name"] for c in REJECT_CASES])
def test_reject_vector(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["packet_hex"])
    with pytest.raises(DecodeError):
        decode_link_packet(raw)
    reassembler = Reassembler(max_message_bytes=10_000, timeout_s=10.0)
    assert reassembler.feed("a", raw, 0.0) is None
    assert counts(reassembler) == {case["reason"]: 1}


def test_layout_by_hand() -> None:
    assert encode_link_packet(LinkPacket(payload=b"hi")) == with_crc(b"\x00hi")
    fragment_3 = LinkPacket(payload=b"x", index=3, more=True, message_id=0x42)
    assert encode_link_packet(fragment_3) == with_crc(b"\x83\x42x")
    last = LinkPacket(payload=b"yz", index=127, more=False, message_id=0)
    assert encode_link_packet(last) == with_crc(b"\x7f\x00yz")


def test_budget_constants_are_frozen() -> None:
    assert (SINGLE_OVERHEAD_BYTES, FRAGMENT_OVERHEAD_BYTES, MAX_FRAGMENTS) == (3, 4, 128)
    assert MIN_MTU_BYTES == 5
    assert [max_payload(m) for m in (120, 240, 254, 1024)] == [117, 237, 251, 1021]
    assert [max_message(m) for m in (120, 240, 254)] == [14_848, 30_208, 32_000]
    assert max_message(75) < 9216 <= max_message(76)


@pytest.mark.parametrize("mtu", [-1, 0, 3, 4])
def test_mtu_too_small_is_refused(mtu: int) -> None:
    with pytest.raises(ValueError, match="below 5"):
        max_payload(mtu)
    with pytest.raises(ValueError, match="below 5"):
        max_message(mtu)
    with pytest.raises(ValueError, match="below 5"):
        fragment(b"x", mtu_bytes=mtu, message_id=0)


# -- fragment() ------------------------------------------------------------------------------


@given(
    message=st.binary(min_size=1, max_size=2000),
    mtu=st.integers(MIN_MTU_BYTES, 300),
    message_id=st.integers(0, 255),
)
def test_fragments_fit_the_mtu_and_round_trip(message: bytes, mtu: int, message_id: int) -> None:
    if len(message) > max_message(mtu):
        with pytest.raises(ValueError, match="fragments at MTU"):
            fragment(message, mtu_bytes=mtu, message_id=message_id)
        return
    packets = fragment(message, mtu_bytes=mtu, message_id=message_id)
    assert all(len(p) <= mtu for p in packets)
    if len(message) <= max_payload(mtu):
        assert packets == [with_crc(b"\x00" + message)]
    else:
        size = mtu - FRAGMENT_OVERHEAD_BYTES
        assert len(packets) == -(-len(message) // size)  # as few packets as the MTU allows
        assert sum(len(p) for p in packets) == len(message) + FRAGMENT_OVERHEAD_BYTES * len(packets)
        assert all(len(p) == mtu for p in packets[:-1])
    reassembler = Reassembler(max_message_bytes=len(message), timeout_s=1.0)
    assert feed_all(reassembler, "a", packets, 0.0) == [message]
    assert counts(reassembler) == {}


def test_nine_kilobyte_frame_at_e22_mtu() -> None:
    packets = fragment(bytes(9216), mtu_bytes=240, message_id=1)
    assert len(packets) == 40
    assert sum(len(p) for p in packets) - 9216 == 160


@pytest.mark.parametrize(
    ("message", "mtu", "message_id", "match"),
    [
        (b"", 240, 0, "never empty"),
        (b"x", 240, 256, "message id 256"),
        (b"x", 240, -1, "message id -1"),
        (bytes(128 * 4 + 1), 8, 0, "needs 129 fragments at MTU 8, at most 128"),
    ],
)
def test_fragment_refuses(message: bytes, mtu: int, message_id: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fragment(message, mtu_bytes=mtu, message_id=message_id)


def test_largest_message_fits_exactly() -> None:
    packets = fragment(bytes(max_message(8)), mtu_bytes=8, message_id=0)
    assert len(packets) == MAX_FRAGMENTS
    assert packets[-1][0] == 0x7F  # index 127, no MORE


# -- encode / decode -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "match"),
    [
        (LinkPacket(payload=b""), "never empty"),
        (LinkPacket(payload=b"x", index=128, message_id=0), "index 128"),
        (LinkPacket(payload=b"x", index=-1, message_id=0), "index -1"),
        (LinkPacket(payload=b"x", index=1), "needs a message id"),
        (LinkPacket(payload=b"x", more=True), "needs a message id"),
        (LinkPacket(payload=b"x", message_id=3), "has no message id"),
        (LinkPacket(payload=b"x", index=1, message_id=256), "message id 256"),
    ],
)
def test_encode_refuses(packet: LinkPacket, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_link_packet(packet)


@given(
    payload=st.binary(min_size=1, max_size=300),
    index=st.integers(0, 127),
    more=st.booleans(),
    message_id=st.integers(0, 255),
)
def test_link_packet_round_trips(payload: bytes, index: int, more: bool, message_id: int) -> None:
    whole = index == 0 and not more
    packet = LinkPacket(
        payload=payload, index=index, more=more, message_id=None if whole else message_id
    )
    raw = encode_link_packet(packet)
    assert decode_link_packet(raw) == packet
    assert len(raw) == len(payload) + (SINGLE_OVERHEAD_BYTES if whole else FRAGMENT_OVERHEAD_BYTES)


@given(st.binary(max_size=64))
def test_garbage_gives_packets_or_decode_error(raw: bytes) -> None:
    try:
        packet = decode_link_packet(raw)
    except DecodeError:
        return
    assert encode_link_packet(packet) == raw


@given(body=st.binary(min_size=2, max_size=64))
def test_garbage_with_valid_crc_decodes_unless_a_fragment_lacks_payload(body: bytes) -> None:
    raw = with_crc(body)
    if body[0] != 0 and len(body) < 3:
        with pytest.raises(DecodeError, match="fragment without payload"):
            decode_link_packet(raw)
    else:
        assert encode_link_packet(decode_link_packet(raw)) == raw


@given(
    message=st.binary(min_size=1, max_size=600),
    mtu=st.integers(MIN_MTU_BYTES, 256),
    data=st.data(),
)
def test_any_single_bit_flip_is_caught(message: bytes, mtu: int, data: st.DataObject) -> None:
    packets = fragment(message, mtu_bytes=mtu, message_id=9)
    which = data.draw(st.integers(0, len(packets) - 1))
    bit = data.draw(st.integers(0, 8 * len(packets[which]) - 1))
    damaged = bytearray(packets[which])
    damaged[bit // 8] ^= 1 << (bit % 8)
    packets[which] = bytes(damaged)
    reassembler = Reassembler(max_message_bytes=600, timeout_s=1.0)
    assert feed_all(reassembler, "a", packets, 0.0) == []
    assert reassembler.dropped[Drop.BAD_CRC] == 1


# -- reassembly ----------------------------------------------------------------------------


def make(max_message_bytes: int = 10_000, timeout_s: float = 10.0, **kw: int) -> Reassembler:
    return Reassembler(max_message_bytes=max_message_bytes, timeout_s=timeout_s, **kw)


def three(message_id: int = 1, fill: bytes = b"m") -> list[bytes]:
    """Three fragments at MTU 8: 4 + 4 + 2 payload bytes."""
    return fragment(fill * 10, mtu_bytes=8, message_id=message_id)


@given(
    messages=st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=5),
    mtu=st.integers(MIN_MTU_BYTES + 3, 64),
    seed=st.integers(0, 2**32),
)
def test_interleaved_senders_all_complete(messages: list[bytes], mtu: int, seed: int) -> None:
    queues = [
        [(f"node{n}", p) for p in fragment(m, mtu_bytes=mtu, message_id=n)]
        for n, m in enumerate(messages)
    ]
    rng = random.Random(seed)
    reassembler = make(max_partials=len(messages))
    done: dict[str, bytes] = {}
    while any(queues):
        queue = rng.choice([q for q in queues if q])  # order kept per sender only
        sender, packet = queue.pop(0)
        message = reassembler.feed(sender, packet, 0.0)
        if message is not None:
            done[sender] = message
    assert done == {f"node{n}": m for n, m in enumerate(messages)}
    assert counts(reassembler) == {}
    assert reassembler.partials == 0


def test_reassembly_key_is_the_message_id_of_a_fragment() -> None:
    assert [reassembly_key(p) for p in three(7)] == [7, 7, 7]
    whole = fragment(b"short", mtu_bytes=64, message_id=7)
    assert len(whole) == 1
    assert reassembly_key(whole[0]) == -1
    assert reassembly_key(b"") == reassembly_key(b"\x81") == -1


@given(
    messages=st.lists(st.binary(min_size=30, max_size=200), min_size=2, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_interleaved_senders_without_addresses_complete(messages: list[bytes], seed: int) -> None:
    """A radio link gives no sender: distinct message ids keep interleaved messages apart."""
    queues = [fragment(m, mtu_bytes=16, message_id=40 + n) for n, m in enumerate(messages)]
    rng = random.Random(seed)
    reassembler = make(max_partials=len(messages))
    done = []
    while any(queues):
        packet = rng.choice([q for q in queues if q]).pop(0)
        message = reassembler.feed(reassembly_key(packet), packet, 0.0)
        if message is not None:
            done.append(message)
    assert sorted(done) == sorted(messages)


def test_same_message_id_from_two_senders_does_not_mix() -> None:
    reassembler = make()
    a, b = three(5, b"a"), three(5, b"b")
    out = [
        reassembler.feed(s, p, 0.0)
        for pair in zip(a, b, strict=True)
        for s, p in zip("ab", pair, strict=True)
    ]
    assert [m for m in out if m] == [b"a" * 10, b"b" * 10]


def test_senders_may_be_bytes_or_tuples() -> None:
    reassembler = make()
    assert feed_all(reassembler, "x", three(), 0.0) == [b"m" * 10]
    for sender in (b"\x01\x02", ("lora0", 0x1234)):
        assert [reassembler.feed(sender, p, 0.0) for p in three()][-1] == b"m" * 10


def test_whole_messages_pass_between_fragments() -> None:
    reassembler = make()
    a = three()
    assert reassembler.feed("a", a[0], 0.0) is None
    assert reassembler.feed("a", fragment(b"note", mtu_bytes=8, message_id=0)[0], 0.0) == b"note"
    assert feed_all(reassembler, "a", a[1:], 0.0) == [b"m" * 10]


def test_corrupted_fragment_loses_the_message_and_then_recovers() -> None:
    reassembler = make()
    packets = three()
    bad = packets[1][:-1] + bytes((packets[1][-1] ^ 0x80,))
    assert feed_all(reassembler, "a", [packets[0], bad, packets[2]], 0.0) == []
    assert counts(reassembler) == {"bad_crc": 1, "lost": 1, "out_of_order": 1}
    assert reassembler.partials == 0
    assert feed_all(reassembler, "a", three(2), 0.0) == [b"m" * 10]


def test_duplicate_fragment_is_dropped_and_message_completes() -> None:
    reassembler = make()
    p = three()
    assert feed_all(reassembler, "a", [p[0], p[0], p[1], p[0], p[1], p[2]], 0.0) == [b"m" * 10]
    assert counts(reassembler) == {"duplicate": 3}


def test_orphan_fragments_are_out_of_order() -> None:
    reassembler = make()
    assert feed_all(reassembler, "a", three()[1:], 0.0) == []
    assert counts(reassembler) == {"out_of_order": 2}
    assert reassembler.partials == 0


def test_new_message_from_sender_drops_the_unfinished_one() -> None:
    reassembler = make()
    first, second = three(1, b"x"), three(2, b"y")
    assert feed_all(reassembler, "a", [first[0], *second], 0.0) == [b"y" * 10]
    assert counts(reassembler) == {"lost": 1}


def test_missed_start_of_next_message_drops_the_unfinished_one() -> None:
    reassembler = make()
    first, second = three(1, b"x"), three(2, b"y")
    assert feed_all(reassembler, "a", [first[0], second[1], second[2]], 0.0) == []
    assert counts(reassembler) == {"lost": 1, "out_of_order": 2}


def test_wrapped_message_id_restarts_cleanly() -> None:
    reassembler = make()
    assert feed_all(reassembler, "a", three(255) + three(0), 0.0) == [b"m" * 10] * 2


def test_timeout_expires_a_partial_message() -> None:
    reassembler = make(timeout_s=10.0)
    p = three()
    assert reassembler.next_deadline() is None
    assert reassembler.feed("a", p[0], now=100.0) is None
    assert reassembler.next_deadline() == 110.0
    assert reassembler.expire(109.9) == 0
    assert reassembler.partials == 1
    assert reassembler.expire(110.0) == 1
    assert reassembler.partials == 0
    assert reassembler.next_deadline() is None
    assert feed_all(reassembler, "a", p[1:], 110.5) == []
    assert counts(reassembler) == {"timed_out": 1, "out_of_order": 2}


def test_feed_expires_stale_partials_itself() -> None:
    reassembler = make(timeout_s=10.0)
    p = three()
    reassembler.feed("a", p[0], now=0.0)
    reassembler.feed("b", p[0], now=5.0)
    assert reassembler.feed("c", fragment(b"z", mtu_bytes=8, message_id=0)[0], 12.0) == b"z"
    assert counts(reassembler) == {"timed_out": 1}
    assert reassembler.next_deadline() == 15.0


def test_timeout_counts_from_the_last_fragment() -> None:
    # A 1 %-duty LoRa link may take an hour per message: only silence should expire it.
    reassembler = make(timeout_s=10.0)
    p = three()
    assert reassembler.feed("a", p[0], now=0.0) is None
    assert reassembler.feed("a", p[1], now=9.0) is None
    assert reassembler.next_deadline() == 19.0
    assert reassembler.feed("a", p[2], now=18.0) == b"m" * 10
    assert counts(reassembler) == {}


def test_memory_bound_drops_least_recently_fed() -> None:
    reassembler = make(max_partials=2)
    a, b, c = three(1, b"a"), three(2, b"b"), three(3, b"c")
    reassembler.feed("a", a[0], 0.0)
    reassembler.feed("b", b[0], 1.0)
    reassembler.feed("a", a[1], 2.0)  # a is now fresher than b
    reassembler.feed("c", c[0], 3.0)  # full: b goes
    assert reassembler.partials == 2
    assert counts(reassembler) == {"evicted": 1}
    assert reassembler.feed("a", a[2], 4.0) == b"a" * 10
    assert feed_all(reassembler, "b", b[1:], 5.0) == []
    assert feed_all(reassembler, "c", c[1:], 6.0) == [b"c" * 10]


def test_too_large_messages_are_not_held() -> None:
    reassembler = make(max_message_bytes=6)
    assert feed_all(reassembler, "a", three(), 0.0) == []  # 10 bytes: fails at fragment 1
    assert reassembler.partials == 0
    assert reassembler.feed("a", fragment(b"7bytes!", mtu_bytes=64, message_id=0)[0], 0.0) is None
    assert counts(reassembler) == {"too_large": 2, "out_of_order": 1}
    assert feed_all(reassembler, "a", fragment(b"sixsix", mtu_bytes=8, message_id=2), 0.0) == [
        b"sixsix"
    ]


def test_first_fragment_over_the_limit_is_not_held() -> None:
    reassembler = make(max_message_bytes=3)
    assert reassembler.feed("a", three()[0], 0.0) is None
    assert reassembler.partials == 0
    assert counts(reassembler) == {"too_large": 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_message_bytes": 0, "timeout_s": 1.0}, "max_message_bytes"),
        ({"max_message_bytes": 1, "timeout_s": 0.0}, "timeout_s"),
        ({"max_message_bytes": 1, "timeout_s": float("nan")}, "timeout_s"),
        ({"max_message_bytes": 1, "timeout_s": 1.0, "max_partials": 0}, "max_partials"),
    ],
)
def test_reassembler_refuses_bad_limits(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reassembler(**kwargs)


def small_packet(index: int, more: bool, message_id: int, payload: bytes) -> bytes:
    whole = index == 0 and not more
    return encode_link_packet(
        LinkPacket(
            payload=payload, index=index, more=more, message_id=None if whole else message_id
        )
    )


packets = st.one_of(
    st.binary(max_size=24),
    st.binary(min_size=1, max_size=12).map(with_crc),
    st.builds(
        small_packet,
        st.integers(0, 3),
        st.booleans(),
        st.integers(0, 2),
        st.binary(min_size=1, max_size=8),
    ),
)


@given(stream=st.lists(st.tuples(st.sampled_from("abcd"), packets, st.floats(0, 5)), max_size=60))
def test_garbage_never_raises_and_memory_stays_bounded(
    stream: list[tuple[str, bytes, float]],
) -> None:
    reassembler = make(max_message_bytes=16, timeout_s=3.0, max_partials=2)
    now = 0.0
    for sender, packet, step in stream:
        now += step
        message = reassembler.feed(sender, packet, now)
        assert message is None or 0 < len(message) <= 16
        assert reassembler.partials <= 2
        assert reassembler.buffered <= 2 * 16
    held = reassembler.partials
    assert reassembler.expire(now + 3.0) == held
    assert (reassembler.partials, reassembler.buffered, reassembler.next_deadline()) == (0, 0, None)
    assert all(v > 0 for v in reassembler.dropped.values())


# -- over KISS ---------------------------------------------------------------------------------


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(
    messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 40_000), max_size=16),
)
def test_messages_over_kiss_ignore_chunking(messages: list[bytes], cuts: list[int]) -> None:
    mtu = 254  # an RNode packet
    wire = b"".join(
        encode_kiss(p)
        for n, m in enumerate(messages)
        for p in fragment(m, mtu_bytes=mtu, message_id=n)
    )
    kiss = KissDecoder(max_frame_bytes=mtu)
    reassembler = make()
    out = [
        message
        for chunk in split_at(wire, cuts)
        for frame in kiss.feed(chunk)
        if (message := reassembler.feed("rnode0", frame.data, 0.0)) is not None
    ]
    assert out == messages


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

"""Per-fragment repair on a cable: known answers, loss measure, and mending under loss."""

from __future__ import annotations

import binascii
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.radio.fragment import fragment
from meshnode.radio.repair import (
    MAX_PARTIALS,
    MAX_REPAIRS,
    MAX_REQUESTS,
    CableRepair,
    LossMeter,
    LossReport,
    RepairReceiver,
    RepairRequest,
    RepairSender,
    decode_link_control,
    encode_loss,
    encode_repair,
    fragment_mtu,
    is_link_control,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "repair.json").read_text())
REPAIRS: list[dict[str, Any]] = VECTORS["repairs"]
LOSSES: list[dict[str, Any]] = VECTORS["losses"]
REJECTS: list[dict[str, Any]] = VECTORS["rejects"]
KISS_BYTES = 3


def crc(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0xFFFF).to_bytes(2, "big")


@pytest.mark.parametrize("case", REPAIRS, ids=[c["name"] for c in REPAIRS])
def test_repair_vector(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["packet_hex"])
    assert encode_repair(case["message_id"], set(case["held"])) == raw
    assert raw[-2:] == crc(raw[:-2])
    assert is_link_control(raw)
    assert decode_link_control(raw) == RepairRequest(
        message_id=case["message_id"], held=frozenset(case["held"])
    )


@pytest.mark.parametrize("case", LOSSES, ids=[c["name"] for c in LOSSES])
def test_loss_vector(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["packet_hex"])
    assert encode_loss(case["byte_loss"]) == raw
    assert decode_link_control(raw) == LossReport(byte_loss=case["byte_loss"])


@pytest.mark.parametrize("case", REJECTS, ids=[c["name"] for c in REJECTS])
def test_reject_vector(case: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_link_control(bytes.fromhex(case["packet_hex"]))


@given(st.binary(max_size=40))
def test_garbage_gives_a_value_or_decode_error(raw: bytes) -> None:
    try:
        decoded = decode_link_control(raw)
    except DecodeError:
        return
    assert isinstance(decoded, RepairRequest | LossReport)


@given(st.integers(0, 255), st.sets(st.integers(0, 127), max_size=128))
def test_repair_round_trips(message_id: int, held: set[int]) -> None:
    raw = encode_repair(message_id, held)
    assert len(raw) <= 3 + 16 + 2
    assert decode_link_control(raw) == RepairRequest(message_id=message_id, held=frozenset(held))


def test_no_fragment_header_is_a_control_header() -> None:
    packets = fragment(bytes(range(256)) * 40, mtu_bytes=84, message_id=0xFF)
    assert len(packets) == 128
    assert not any(is_link_control(p) for p in packets)


def test_fragment_size_follows_the_loss() -> None:
    assert fragment_mtu(0.0, overhead_bytes=KISS_BYTES, mtu_bytes=1024) is None
    assert fragment_mtu(0.0001, overhead_bytes=KISS_BYTES, mtu_bytes=1024) is None
    one_percent = fragment_mtu(0.01, overhead_bytes=KISS_BYTES, mtu_bytes=1024)
    tenth = fragment_mtu(0.001, overhead_bytes=KISS_BYTES, mtu_bytes=1024)
    assert one_percent is not None
    assert tenth is not None
    assert 20 <= one_percent <= 32 < tenth <= 100


def lossy(rng: random.Random, packet: bytes, byte_loss: float) -> bytes:
    return bytes(b for b in packet if rng.random() >= byte_loss)


def test_the_meter_measures_the_share_of_bytes_lost() -> None:
    rng = random.Random(5)
    clean, noisy = LossMeter(), LossMeter()
    for _ in range(400):
        clean.seen(30, whole=True)
        noisy.seen(30, whole=len(lossy(rng, bytes(30), 0.01)) == 30)
    assert clean.byte_loss == 0.0
    assert 0.004 <= noisy.byte_loss <= 0.025


def run_cable(
    byte_loss: float, messages: list[bytes], seed: int, *, peer_loss: float | None = None
) -> tuple[list[bytes], float, CableRepair, CableRepair]:
    """A sends ``messages`` over a 9600-baud cable that drops bytes both ways; returns
    what B delivered, A's wire bytes per message byte, and both ends."""
    rng = random.Random(seed)
    a, b = (
        CableRepair(frame_s=0.27, mtu_bytes=1024, overhead_bytes=3, max_message_bytes=4096)
        for _ in range(2)
    )
    got: list[bytes] = []
    now, wire, message_id = 0.0, 0, 0

    def a_sends(packet: bytes) -> None:
        nonlocal now, wire
        wire += len(packet) + KISS_BYTES
        now += (len(packet) + KISS_BYTES) / 960
        got.extend(b.receive(lossy(rng, packet, byte_loss), now))
        for back in b.take_urgent(now):
            a.receive(lossy(rng, back, byte_loss), now)

    queue = list(messages)
    while now < 120 and len(got) < len(messages):
        if peer_loss is not None:
            a.told_loss(peer_loss)
        for packet in a.take_urgent(now):
            a_sends(packet)
        if queue:
            message_id = (message_id + 1) % 256
            packets = fragment(queue.pop(0), mtu_bytes=a.mtu_bytes, message_id=message_id)
            a.sender.sent(message_id, packets)
            for packet in packets:
                a_sends(packet)
        else:
            now += 0.05
            for back in b.take_urgent(now):
                a.receive(lossy(rng, back, byte_loss), now)
    return got, wire / sum(len(m) for m in messages), a, b


MESSAGES = [bytes([k]) * 181 for k in range(40)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_percent_of_bytes_lost_costs_under_twice_the_bytes(seed: int) -> None:
    got, ratio, _, b = run_cable(0.01, MESSAGES, seed, peer_loss=0.01)
    assert sorted(got) == MESSAGES  # all of them, once each
    assert b.receiver.repaired > 0
    assert ratio < 1.9


def test_the_receiver_tells_the_sender_to_cut_small() -> None:
    got, _, a, _ = run_cable(0.01, MESSAGES, 4)
    assert 0.005 <= a.peer_loss <= 0.02
    assert a.mtu_bytes < 40
    # The first ones went whole before the report came: those lost are left to the channel.
    assert len(set(got)) == len(got) >= len(MESSAGES) - 3
    assert set(MESSAGES[3:]) <= set(got)


def test_a_clean_cable_sends_whole_packets_and_no_control() -> None:
    got, ratio, a, b = run_cable(0.0, MESSAGES, 1)
    assert got == MESSAGES
    assert a.mtu_bytes == 1024
    assert b.repairs_asked == 0
    assert ratio < 1.05


def test_a_message_nobody_repairs_is_given_up_and_the_rest_flow() -> None:
    receiver = RepairReceiver(gap_s=0.1, retry_s=0.5, max_message_bytes=4096)
    first = fragment(b"x" * 100, mtu_bytes=30, message_id=1)
    second = fragment(b"y" * 100, mtu_bytes=30, message_id=2)
    assert receiver.feed(first[0], 0.0) == []
    assert [m for p in second for m in receiver.feed(p, 0.1)] == [b"y" * 100]
    asked = [len(receiver.requests(0.2 + k)) for k in range(MAX_REQUESTS + 1)]
    assert asked == [1] * MAX_REQUESTS + [0]
    assert receiver.given_up == 1
    assert receiver.partials == 0
    assert receiver.next_deadline() is None


def test_partial_messages_are_capped() -> None:
    receiver = RepairReceiver(gap_s=0.1, retry_s=0.5, max_message_bytes=4096)
    for message_id in range(MAX_PARTIALS + 5):
        receiver.feed(fragment(b"z" * 100, mtu_bytes=30, message_id=message_id)[1], 0.0)
    assert receiver.partials == MAX_PARTIALS
    assert receiver.given_up == 5


def test_a_late_repeat_of_a_whole_message_starts_nothing() -> None:
    receiver = RepairReceiver(gap_s=0.1, retry_s=0.5, max_message_bytes=4096)
    packets = fragment(b"w" * 100, mtu_bytes=30, message_id=9)
    assert [m for p in packets for m in receiver.feed(p, 0.0)] == [b"w" * 100]
    assert receiver.feed(packets[2], 1.0) == []
    assert receiver.partials == 0
    assert receiver.requests(5.0) == []


def test_the_sender_repairs_only_what_is_lacking_and_forgets_old_messages() -> None:
    sender = RepairSender()
    packets = fragment(b"v" * 100, mtu_bytes=30, message_id=3)
    sender.sent(3, packets)
    assert sender.repair(RepairRequest(message_id=3, held=frozenset({0, 2}))) == [
        p for i, p in enumerate(packets) if i not in {0, 2}
    ]
    asked = [sender.repair(RepairRequest(message_id=3, held=frozenset())) for _ in range(20)]
    answered = MAX_REPAIRS - 1  # the first was answered above
    assert [len(a) for a in asked] == [len(packets)] * answered + [0] * (20 - answered)
    for message_id in range(4, 4 + 40):
        sender.sent(message_id, fragment(b"u" * 100, mtu_bytes=30, message_id=message_id))
    assert sender.repair(RepairRequest(message_id=3, held=frozenset())) == []


def test_until_the_far_end_reports_a_noisy_line_is_taken_as_noisy_both_ways() -> None:
    end = CableRepair(frame_s=0.27, mtu_bytes=1024, overhead_bytes=3, max_message_bytes=4096)
    rng = random.Random(2)
    whole = fragment(b"t" * 20, mtu_bytes=1024, message_id=0)[0]
    for _ in range(12):
        end.receive(lossy(rng, whole, 0.05), 0.0)
    assert end.mtu_bytes < 100  # what reaches us is damaged: we cut ours before being told
    end.told_loss(0.0)  # the far end says it gets all of ours
    assert end.mtu_bytes == 1024
    for _ in range(12):
        end.receive(lossy(rng, whole, 0.05), 1.0)
    assert end.mtu_bytes == 1024  # its word stands over our guess

"""REYAX RYLR896/RYLR998: exact AT lines, base64 payload budget, a line parser that never raises."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.radio.rylr import (
    FLASH_QUERIES,
    MAX_DATA_CHARS,
    MTU_BYTES,
    CommandAccepted,
    CommandRejected,
    ModuleRestarted,
    PacketReceived,
    RylrModel,
    RylrParams,
    RylrParser,
    SettingReported,
    configure_commands,
    decode_payload,
    encode_payload,
    encode_send,
    meshnode_params,
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def rcv_line(address: int, payload: bytes, rssi: int = -80, snr: int = 9) -> bytes:
    """What the receiving module prints for a packet sent with encode_send."""
    text = encode_payload(payload)
    return f"+RCV={address},{len(text)},{text},{rssi},{snr}\r\n".encode()


# -- host -> module ---------------------------------------------------------------------------


def test_rylr998_configure_known_answer() -> None:
    # The RYLR998 guide recommends AT+PARAMETER=9,7,1,12 (SF9, 125 kHz, 4/5, preamble 12).
    params = meshnode_params(
        RylrModel.RYLR998,
        frequency_hz=869_525_000,
        bandwidth_hz=125_000,
        spreading_factor=9,
        coding_rate=5,
        tx_power_dbm=14,
    )
    assert configure_commands(params) == [
        b"AT+ADDRESS=0\r\n",
        b"AT+NETWORKID=18\r\n",
        b"AT+BAND=869525000\r\n",
        b"AT+PARAMETER=9,7,1,12\r\n",
        b"AT+CRFOP=14\r\n",
    ]


@pytest.mark.parametrize(
    ("sf", "bw_hz", "expected"),
    [
        (10, 125_000, b"AT+PARAMETER=10,7,1,7\r\n"),  # the RYLR896 guide's "< 3 km"
        (12, 31_250, b"AT+PARAMETER=12,4,1,7\r\n"),  # and its "> 3 km"
        (12, 7_800, b"AT+PARAMETER=12,0,1,7\r\n"),
    ],
)
def test_rylr896_parameter_codes(sf: int, bw_hz: int, expected: bytes) -> None:
    params = RylrParams(
        model=RylrModel.RYLR896,
        frequency_hz=868_500_000,
        bandwidth_hz=bw_hz,
        spreading_factor=sf,
        coding_rate=5,
        tx_power_dbm=15,
        network_id=6,
        preamble=7,
    )
    assert configure_commands(params)[3] == expected


def test_send_known_answer() -> None:
    # base64("hello") = "aGVsbG8=", sent without padding: 7 characters.
    assert encode_send(0, b"hello") == b"AT+SEND=0,7,aGVsbG8\r\n"
    assert encode_send(65535, b"\x00\xff") == b"AT+SEND=65535,3,AP8\r\n"


def test_payload_budget() -> None:
    assert (MAX_DATA_CHARS, MTU_BYTES) == (240, 180)
    line = encode_send(1, bytes(range(180)))
    assert line.startswith(b"AT+SEND=1,240,")
    assert len(line) == len(b"AT+SEND=1,240,") + 240 + 2
    for bad in (b"", bytes(181)):
        with pytest.raises(ValueError, match=r"1\.\.180"):
            encode_send(1, bad)
    with pytest.raises(ValueError, match="address"):
        encode_send(65536, b"x")


@pytest.mark.parametrize(
    ("model", "changes", "field"),
    [
        (RylrModel.RYLR998, {"spreading_factor": 10}, "spreading_factor"),  # > 9 at 125 kHz
        (RylrModel.RYLR998, {"network_id": 6, "preamble": 8}, "preamble"),  # 12 unless id 18
        (RylrModel.RYLR998, {"network_id": 16}, "network_id"),
        (RylrModel.RYLR998, {"tx_power_dbm": 23}, "tx_power_dbm"),
        (RylrModel.RYLR998, {"bandwidth_hz": 62_500}, "bandwidth_hz"),
        (RylrModel.RYLR896, {"spreading_factor": 6}, "spreading_factor"),
        (RylrModel.RYLR896, {"preamble": 12}, "preamble"),
        (RylrModel.RYLR896, {"tx_power_dbm": 16}, "tx_power_dbm"),
        (RylrModel.RYLR896, {"bandwidth_hz": 100_000}, "bandwidth_hz"),
        (RylrModel.RYLR896, {"coding_rate": 9}, "coding_rate"),
    ],
)
def test_params_validation_names_the_field(
    model: RylrModel, changes: dict[str, int], field: str
) -> None:
    fields: dict[str, int] = {
        "frequency_hz": 868_100_000,
        "bandwidth_hz": 125_000,
        "spreading_factor": 9,
        "coding_rate": 5,
        "tx_power_dbm": 10,
        "network_id": 18 if model is RylrModel.RYLR998 else 6,
        "preamble": 12 if model is RylrModel.RYLR998 else 7,
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=field):
        RylrParams(model=model, **fields)


def test_meshnode_params_for_rylr896() -> None:
    params = meshnode_params(
        RylrModel.RYLR896,
        frequency_hz=868_100_000,
        bandwidth_hz=125_000,
        spreading_factor=10,
        coding_rate=5,
        tx_power_dbm=14,
        address=42,
    )
    assert configure_commands(params) == [
        b"AT+ADDRESS=42\r\n",
        b"AT+NETWORKID=6\r\n",
        b"AT+BAND=868100000\r\n",
        b"AT+PARAMETER=10,7,1,7\r\n",
        b"AT+CRFOP=14\r\n",
    ]


def test_flash_settings_are_only_written_on_change() -> None:
    params = meshnode_params(
        RylrModel.RYLR998,
        frequency_hz=869_525_000,
        bandwidth_hz=125_000,
        spreading_factor=9,
        coding_rate=5,
        tx_power_dbm=14,
        address=5,
    )
    parser = RylrParser()
    answers = parser.feed(b"+ADDRESS=5\r\n+NETWORKID=3\r\n")
    reported = {e.name: e.value for e in answers if isinstance(e, SettingReported)}
    assert FLASH_QUERIES == (b"AT+ADDRESS?\r\n", b"AT+NETWORKID?\r\n")
    assert configure_commands(params, reported)[:2] == [
        b"AT+NETWORKID=18\r\n",
        b"AT+BAND=869525000\r\n",
    ]
    same = {"ADDRESS": "5", "NETWORK": "18"}
    assert configure_commands(params, same)[0] == b"AT+BAND=869525000\r\n"


def test_rylr998_allows_long_preamble_with_network_18() -> None:
    params = RylrParams(
        model=RylrModel.RYLR998,
        frequency_hz=915_000_000,
        bandwidth_hz=500_000,
        spreading_factor=11,
        coding_rate=8,
        tx_power_dbm=22,
        network_id=18,
        preamble=24,
    )
    assert configure_commands(params)[3] == b"AT+PARAMETER=11,9,4,24\r\n"


# -- module -> host ---------------------------------------------------------------------------


def test_parser_known_lines() -> None:
    parser = RylrParser()
    wire = (
        b"+READY\r\n"
        b"+OK\r\n"
        b"+ERR=13\r\n"
        b"+ADDRESS=120\r\n"
        b"+RESET\r\n"
        b"+RCV=50,7,aGVsbG8,-99,40\r\n"
        b"+RCV=7,4,AP8A,-120,-12\r\n"
    )
    assert parser.feed(wire) == [
        ModuleRestarted(),
        CommandAccepted(),
        CommandRejected(code=13),
        SettingReported(name="ADDRESS", value="120"),
        SettingReported(name="RESET", value=""),
        PacketReceived(address=50, payload=b"hello", rssi_dbm=-99, snr_db=40),
        PacketReceived(address=7, payload=b"\x00\xff\x00", rssi_dbm=-120, snr_db=-12),
    ]
    assert CommandRejected(code=13).meaning == "data longer than 240 bytes"
    assert CommandRejected(code=99).meaning == "unknown error 99"
    assert (parser.unknown_lines, parser.malformed_packets, parser.undecodable_payloads) == (
        0,
        0,
        0,
    )


def test_parser_counts_what_it_cannot_use() -> None:
    parser = RylrParser()
    wire = (
        b"\x00\xffnoise\r\n"  # not ASCII
        b"hello there\r\n"  # not a module line
        b"+ERR=x\r\n"
        b"+RCV=50,5,HELLO,-99,40\r\n"  # plain text from a non-meshnode sender
        b"+RCV=50,9,aGVsbG8,-99,40\r\n"  # length does not match
        b"+RCV=70000,7,aGVsbG8,-99,40\r\n"  # address out of range
        b"+RCV=50,7,aGVsbG8\r\n"  # fields missing
        b"\r\n" + b"A" * 600 + b"\r\n"  # blank lines are skipped silently  # overlong
        b"+OK\r\n"
    )
    assert parser.feed(wire) == [CommandAccepted()]
    assert parser.unknown_lines == 3
    assert parser.malformed_packets == 3
    assert parser.undecodable_payloads == 1
    assert parser.overlong_lines == 1


@pytest.mark.parametrize("text", ["", "a", "aGVsbG8=", "aGVsbG9", "a,b", "aGVs bG8", "é"])
def test_decode_payload_rejects_non_canonical_text(text: str) -> None:
    # "aGVsbG9" would decode to "hello" too, but only "aGVsbG8" is canonical.
    with pytest.raises(DecodeError):
        decode_payload(text)


# -- properties -------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=MTU_BYTES))
def test_payload_round_trip_within_budget(payload: bytes) -> None:
    text = encode_payload(payload)
    assert len(text) <= MAX_DATA_CHARS
    assert "," not in text
    assert "=" not in text
    assert decode_payload(text) == payload


@given(payload=st.binary(min_size=1, max_size=MTU_BYTES), address=st.integers(0, 65535))
def test_send_then_receive(payload: bytes, address: int) -> None:
    assert RylrParser().feed(rcv_line(address, payload)) == [
        PacketReceived(address=address, payload=payload, rssi_dbm=-80, snr_db=9)
    ]


@given(st.binary(max_size=800))
def test_garbage_never_raises(data: bytes) -> None:
    RylrParser().feed(data)


@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.sampled_from([b"+OK\r\n", b"+ERR=4\r\n", b"+READY\r\n", b"x" * 700]),
            st.binary(min_size=1, max_size=MTU_BYTES).map(lambda p: rcv_line(3, p)),
        ),
        max_size=8,
    ),
    cuts=st.lists(st.integers(0, 4096), max_size=12),
)
def test_parser_ignores_chunking(lines: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(lines)
    whole = RylrParser()
    expected = whole.feed(wire)
    chunked = RylrParser()
    assert [e for chunk in split_at(wire, cuts) for e in chunked.feed(chunk)] == expected
    counters = ("unknown_lines", "overlong_lines", "malformed_packets", "undecodable_payloads")
    assert [getattr(chunked, c) for c in counters] == [getattr(whole, c) for c in counters]

"""RNode over KISS: exact command bytes, device reports decoded, garbage counted, never raised."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.radio.rnode import (
    MTU_BYTES,
    ChannelStatsReported,
    DeviceDetected,
    ErrorReported,
    FirmwareReported,
    PacketReceived,
    ReadyReported,
    RNodeCommand,
    RNodeEvent,
    RNodeParams,
    RNodeParser,
    SettingReported,
    SnrReported,
    configure_commands,
    decode_frame,
    detect_commands,
    encode_command,
    encode_data,
    leave_commands,
    mismatched_settings,
)

EU_869 = RNodeParams(
    frequency_hz=869_525_000,
    bandwidth_hz=125_000,
    spreading_factor=9,
    coding_rate=5,
    tx_power_dbm=14,
    airtime_limit_long_pct=10.0,
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# -- host -> device: known answers ------------------------------------------------------------


def test_command_codes_match_rnode_framing_h() -> None:
    # markqvist/RNode_Firmware Framing.h; radio.md 3.2 table.
    expected = {
        "DATA": 0x00,
        "FREQUENCY": 0x01,
        "BANDWIDTH": 0x02,
        "TX_POWER": 0x03,
        "SF": 0x04,
        "CR": 0x05,
        "RADIO_STATE": 0x06,
        "RADIO_LOCK": 0x07,
        "DETECT": 0x08,
        "LEAVE": 0x0A,
        "ST_ALOCK": 0x0B,
        "LT_ALOCK": 0x0C,
        "READY": 0x0F,
        "STAT_RX": 0x21,
        "STAT_TX": 0x22,
        "STAT_RSSI": 0x23,
        "STAT_SNR": 0x24,
        "STAT_CHTM": 0x25,
        "PLATFORM": 0x48,
        "MCU": 0x49,
        "FW_VERSION": 0x50,
        "ERROR": 0x90,
    }
    assert {name: int(RNodeCommand[name]) for name in expected} == expected


def test_detect_known_answer() -> None:
    # Reticulum writes C0 08 73 C0 50 00 C0 48 00 C0 49 00 C0 (radio.md 3.2); we close and
    # reopen each frame, which KISS reads the same (FEND FEND is an empty frame).
    assert b"".join(detect_commands()).hex(" ") == (
        "c0 08 73 c0 c0 50 00 c0 c0 48 00 c0 c0 49 00 c0"
    )


def test_configure_known_answer_eu_869() -> None:
    # 869 525 000 = 0x33D3E608, 125 000 = 0x0001E848, LT_ALOCK 10 % -> 1000 = 0x03E8.
    assert [f.hex(" ") for f in configure_commands(EU_869)] == [
        "c0 01 33 d3 e6 08 c0",
        "c0 02 00 01 e8 48 c0",
        "c0 03 0e c0",
        "c0 04 09 c0",
        "c0 05 05 c0",
        "c0 0c 03 e8 c0",
        "c0 06 01 c0",
    ]


def test_frequency_with_a_fend_byte_is_escaped() -> None:
    # 915 000 000 = 0x3689CAC0: the last byte is FEND and goes out as FESC TFEND (DB DC).
    params = RNodeParams(
        frequency_hz=915_000_000,
        bandwidth_hz=250_000,
        spreading_factor=7,
        coding_rate=5,
        tx_power_dbm=17,
        airtime_limit_short_pct=33.0,
    )
    frames = configure_commands(params)
    assert frames[0].hex(" ") == "c0 01 36 89 ca db dc c0"
    assert frames[1].hex(" ") == "c0 02 00 03 d0 90 c0"  # 250 000 = 0x0003D090
    assert frames[5].hex(" ") == "c0 0b 0c e4 c0"  # ST_ALOCK 33 % -> 3300 = 0x0CE4


def test_data_and_leave_known_answers() -> None:
    assert encode_data(b"\xc0\xdb\x01").hex(" ") == "c0 00 db dc db dd 01 c0"
    assert [f.hex(" ") for f in leave_commands()] == ["c0 06 00 c0", "c0 0a ff c0"]
    assert encode_command(RNodeCommand.ERROR, b"\x02").hex(" ") == "c0 90 02 c0"


def test_data_size_is_bounded_by_the_mtu() -> None:
    assert MTU_BYTES == 254  # 255-byte LoRa payload minus RNode's 1-byte header
    encode_data(bytes(254))
    with pytest.raises(ValueError, match=r"1\.\.254"):
        encode_data(bytes(255))
    with pytest.raises(ValueError, match=r"1\.\.254"):
        encode_data(b"")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frequency_hz", 100_000_000),
        ("bandwidth_hz", 2_000_000),
        ("spreading_factor", 13),
        ("coding_rate", 4),
        ("tx_power_dbm", 38),
        ("airtime_limit_long_pct", 0.0),
    ],
)
def test_params_out_of_range_name_the_field(field: str, value: float) -> None:
    fields: dict[str, float] = {
        "frequency_hz": 869_525_000,
        "bandwidth_hz": 125_000,
        "spreading_factor": 9,
        "coding_rate": 5,
        "tx_power_dbm": 14,
    }
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        RNodeParams(**fields)  # type: ignore[arg-type]


# -- device -> host ---------------------------------------------------------------------------


def test_received_packet_carries_rssi_and_snr() -> None:
    # RSSI byte 0x3C = 60 -> 60 - 157 = -97 dBm; SNR 0xF6 = -10 -> -2.5 dB.
    parser = RNodeParser()
    wire = bytes.fromhex("c0233cc0 c024f6c0 c0006869c0")
    assert parser.feed(wire) == [PacketReceived(data=b"hi", rssi_dbm=-97, snr_db=-2.5)]
    # The reports belong to one packet only.
    assert parser.feed(bytes.fromhex("c00001c0")) == [PacketReceived(data=b"\x01")]


def test_snr_byte_equal_to_fend_arrives_escaped() -> None:
    # SNR -16 dB is int8 -64 = 0xC0, sent as DB DC.
    assert decode_frame(bytes((0x24, 0xC0))) == SnrReported(snr_db=-16.0)
    parser = RNodeParser()
    assert parser.feed(bytes.fromhex("c024dbdcc0c00041c0")) == [
        PacketReceived(data=b"A", snr_db=-16.0)
    ]


def test_setting_echoes_and_mismatch_check() -> None:
    parser = RNodeParser()
    echoes = b"".join(configure_commands(EU_869))  # the device echoes the same frames
    events = parser.feed(echoes)
    reported = {e.command: e.value for e in events if isinstance(e, SettingReported)}
    assert reported[RNodeCommand.FREQUENCY] == 869_525_000
    assert reported[RNodeCommand.LT_ALOCK] == 1000
    assert mismatched_settings(EU_869, reported) == []
    reported[RNodeCommand.FREQUENCY] += 100  # within Reticulum's +-100 Hz
    reported[RNodeCommand.SF] = 7
    del reported[RNodeCommand.RADIO_STATE]
    assert mismatched_settings(EU_869, reported) == [RNodeCommand.SF, RNodeCommand.RADIO_STATE]


def test_device_reports_known_answers() -> None:
    cases: list[tuple[str, RNodeEvent]] = [
        ("0846", DeviceDetected()),
        ("500134", FirmwareReported(major=1, minor=0x34)),  # 1.52
        ("0f01", ReadyReported(ready=True)),
        ("0f00", ReadyReported(ready=False)),
        ("0f", ReadyReported(ready=True)),
        ("9004", ErrorReported(code=4)),
        ("4880", SettingReported(command=RNodeCommand.PLATFORM, value=0x80)),
        ("2100000102", SettingReported(command=RNodeCommand.STAT_RX, value=258)),
        (
            "2500fa006403e80001aabbcc",
            ChannelStatsReported(
                airtime_short_pct=2.5,
                airtime_long_pct=1.0,
                channel_load_short_pct=10.0,
                channel_load_long_pct=0.01,
            ),
        ),
    ]
    for hex_frame, event in cases:
        assert decode_frame(bytes.fromhex(hex_frame)) == event
    assert ErrorReported(code=4).meaning == "transmit queue full"
    assert "0x7f" in ErrorReported(code=0x7F).meaning


@pytest.mark.parametrize(
    "hex_frame",
    ["", "77", "03", "030e0e", "0101020304ff", "0873", "00", "2500", "50", "0f0101", "0a"],
)
def test_malformed_frames_raise_decode_error(hex_frame: str) -> None:
    with pytest.raises(DecodeError):
        decode_frame(bytes.fromhex(hex_frame))


def test_parser_counts_and_skips_bad_frames() -> None:
    parser = RNodeParser(max_frame_bytes=16)
    wire = bytes.fromhex(
        "ffff"  # line noise before the first FEND
        "c077c0"  # unknown command
        "c003c0"  # TX_POWER without its byte
        "c000dbffc0"  # bad escape
        "c000" + "41" * 20 + "c0"  # oversize
        "c0000102c0"
    )
    assert parser.feed(wire) == [PacketReceived(data=b"\x01\x02")]
    assert (parser.unknown_frames, parser.malformed_frames, parser.dropped_frames) == (1, 1, 2)


# -- properties -------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=MTU_BYTES))
def test_data_round_trip(payload: bytes) -> None:
    assert RNodeParser().feed(encode_data(payload)) == [PacketReceived(data=payload)]


@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    parser = RNodeParser()
    events = parser.feed(data)
    assert all(not isinstance(e, PacketReceived) or e.data for e in events)


@given(
    frames=st.lists(st.binary(max_size=40), max_size=8),
    cuts=st.lists(st.integers(0, 1024), max_size=10),
)
def test_parser_ignores_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(b"\xc0" + f + b"\xc0" for f in frames)
    whole = RNodeParser()
    expected = whole.feed(wire)
    chunked = RNodeParser()
    got = [e for chunk in split_at(wire, cuts) for e in chunked.feed(chunk)]
    assert got == expected
    assert (chunked.unknown_frames, chunked.malformed_frames, chunked.dropped_frames) == (
        whole.unknown_frames,
        whole.malformed_frames,
        whole.dropped_frames,
    )

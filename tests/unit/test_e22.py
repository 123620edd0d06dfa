"""Ebyte E22 / Waveshare HAT: register bytes, C1 answers, transparent-mode budget, LoRa mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.radio.e22 import (
    AIR_RATES_BPS,
    MTU_BYTES,
    SUB_PACKET_SIZES,
    UART_BAUDS,
    WOR_PERIODS_MS,
    E22Band,
    E22Config,
    E22Mode,
    ModePins,
    Parity,
    air_rate_for_lora,
    channel_for_frequency,
    decode_config,
    decode_rssi_answer,
    encode_config,
    encode_read,
    encode_rssi_read,
    meshnode_config,
    mode_pins,
    split_writes,
    transparent_mtu_bytes,
    tx_power_steps_dbm,
)
from meshnode.radio.kiss import KissDecoder, encode_kiss

# -- known answers ----------------------------------------------------------------------------


def test_factory_default_known_answer() -> None:
    # radio.md 3.3 / E22-400T22S1C manual: C0 00 09 00 00 00 62 00 17 03 00 00.
    # 0x62 = 011 00 010 = 9600 Bd, 8N1, 2.4k; 0x00 = 240 B, 22 dBm; 0x17 = CH 23 =
    # 433.125 MHz; 0x03 = WOR receiver, 2000 ms.
    config = E22Config(band=E22Band.MHZ_400, channel=0x17)
    assert encode_config(config).hex(" ") == "c0 00 09 00 00 00 62 00 17 03 00 00"
    assert config.frequency_hz == 433_125_000


def test_manual_example_address_and_air_rate() -> None:
    # Ebyte/Waveshare example "C0 00 04 12 34 00 61": address 0x1234, NETID 0, 9600 8N1, 1.2k.
    config = E22Config(band=E22Band.MHZ_900, address=0x1234, air_rate_bps=1200)
    assert encode_config(config)[3:7].hex(" ") == "12 34 00 61"


def test_temporary_write_and_read_commands() -> None:
    config = E22Config(band=E22Band.MHZ_900)
    assert encode_config(config, save=False)[:3].hex(" ") == "c2 00 09"
    assert encode_read().hex(" ") == "c1 00 07"
    assert encode_rssi_read().hex(" ") == "c0 c1 c2 c3 00 02"


def test_meshnode_eu868_config_known_answer() -> None:
    # 868.125 MHz = 850.125 + 18 -> CH 0x12; SF9/125 kHz/4-5 = 1758 bit/s -> 2.4k preset;
    # 14 dBm -> the 13-dBm step (index 2); REG1 = 00 1 000 10 = 0x22 (ambient RSSI on);
    # REG3 = 0 0 0 1 0 011 = 0x13 (LBT on, WOR period 2000 ms).
    config = meshnode_config(
        band=E22Band.MHZ_900,
        frequency_hz=868_125_000,
        bandwidth_hz=125_000,
        spreading_factor=9,
        coding_rate=5,
        tx_power_dbm=14,
    )
    assert encode_config(config).hex(" ") == "c0 00 09 00 00 00 62 22 12 13 00 00"


def test_t30_power_steps_and_high_baud() -> None:
    config = E22Config(
        band=E22Band.MHZ_400,
        max_power_dbm=30,
        tx_power_dbm=24,
        uart_baud=115200,
        parity=Parity.P8E1,
        air_rate_bps=62500,
        sub_packet_bytes=32,
        packet_rssi=True,
        fixed_transmission=True,
        relay=True,
        wor_transmitter=True,
        wor_period_ms=4000,
        channel=83,
    )
    # REG0 = 111 10 111 = 0xF7; REG1 = 11 0 000 10 = 0xC2; REG3 = 1110 1 111 = 0xEF.
    assert encode_config(config).hex(" ") == "c0 00 09 00 00 00 f7 c2 53 ef 00 00"
    assert tx_power_steps_dbm(30) == (30, 27, 24, 21)


def test_mode_pins_table() -> None:
    assert mode_pins(E22Mode.TRANSMISSION) == ModePins(m0=False, m1=False)
    assert mode_pins(E22Mode.WOR) == ModePins(m0=True, m1=False)
    assert mode_pins(E22Mode.CONFIGURATION) == ModePins(m0=False, m1=True)
    assert mode_pins(E22Mode.DEEP_SLEEP) == ModePins(m0=True, m1=True)


# -- decoding answers -------------------------------------------------------------------------


def test_decode_write_echo_and_read_answer() -> None:
    config = meshnode_config(
        band=E22Band.MHZ_900,
        frequency_hz=869_125_000,
        bandwidth_hz=125_000,
        spreading_factor=7,
        coding_rate=5,
        tx_power_dbm=22,
    )
    echo = b"\xc1" + encode_config(config)[1:]  # answer to C0: C1 00 09 + registers
    assert decode_config(echo, band=E22Band.MHZ_900) == config
    read = bytes.fromhex("c10007") + encode_config(config)[3:10]
    assert decode_config(read, band=E22Band.MHZ_900) == config
    assert config.channel == 19
    assert config.air_rate_bps == 4800


def test_parity_11_reads_as_8n1_and_reserved_bits_are_ignored() -> None:
    answer = bytes.fromhex("c10007 0000 00 7a 1c 12 03")  # REG0 parity 11; REG1 bits 4-2 set
    config = decode_config(answer, band=E22Band.MHZ_900)
    assert config.parity is Parity.P8N1
    assert (config.uart_baud, config.air_rate_bps, config.tx_power_dbm) == (9600, 2400, 22)


@pytest.mark.parametrize(
    "hex_answer",
    [
        "ffffff",  # the module refused the command
        "",
        "c1",
        "c0 00 07 00 00 00 62 00 12 03",  # not an answer header
        "c1 01 07 00 00 00 62 00 12 03",  # not from address 00
        "c1 00 04 12 34 00 61",  # partial register set
        "c1 00 07 00 00 00 62 00 12",  # too short
        "c1 00 07 00 00 00 62 00 12 03 00",  # too long
        "c1 00 07 00 00 00 62 00 51 03",  # channel 81 > 80 on the 900 series
    ],
)
def test_bad_answers_raise_decode_error(hex_answer: str) -> None:
    with pytest.raises(DecodeError):
        decode_config(bytes.fromhex(hex_answer), band=E22Band.MHZ_900)


def test_rssi_answer() -> None:
    # dBm = -(256 - byte): 0xA0 = 160 -> -96, 0xB0 = 176 -> -80.
    assert decode_rssi_answer(bytes.fromhex("c10002a0b0")) == (-96, -80)
    with pytest.raises(DecodeError):
        decode_rssi_answer(bytes.fromhex("c10001a0"))


# -- transparent stream and LoRa mapping ------------------------------------------------------


def test_mtu_budget() -> None:
    assert MTU_BYTES == 200
    assert [transparent_mtu_bytes(s) for s in SUB_PACKET_SIZES] == [200, 106, 53, 26]
    for size in SUB_PACKET_SIZES:
        # a link packet plus KISS's FEND, type byte and FEND fits with room for escapes
        assert transparent_mtu_bytes(size) + 3 < size


def test_a_full_packet_fits_one_sub_packet_unless_it_escapes_badly() -> None:
    plain = encode_kiss(bytes(MTU_BYTES))
    assert split_writes(plain) == [plain]  # 203 bytes
    worst = encode_kiss(b"\xc0" * MTU_BYTES)  # every byte escaped: 403 bytes
    assert [len(w) for w in split_writes(worst)] == [240, 163]
    assert KissDecoder(MTU_BYTES).feed(b"".join(split_writes(worst)))[0].data == b"\xc0" * 200


def test_split_writes() -> None:
    stream = bytes(range(256)) * 2
    writes = split_writes(stream)
    assert [len(w) for w in writes] == [240, 240, 32]
    assert b"".join(writes) == stream
    assert split_writes(b"") == []
    with pytest.raises(ValueError, match="sub_packet_bytes"):
        split_writes(stream, 100)


@pytest.mark.parametrize(
    ("sf", "bw_hz", "cr", "preset"),
    [
        (7, 125_000, 5, 4800),  # 5469 bit/s
        (8, 125_000, 5, 2400),  # 3125
        (9, 125_000, 5, 2400),  # 1758
        (10, 125_000, 5, 1200),  # 977
        (12, 125_000, 5, 300),  # 293
        (7, 250_000, 5, 9600),  # 10938
        (7, 500_000, 5, 19200),  # 21875
        (9, 125_000, 8, 1200),  # 1099
    ],
)
def test_air_rate_for_lora(sf: int, bw_hz: int, cr: int, preset: int) -> None:
    assert air_rate_for_lora(sf, bw_hz, cr) == preset


def test_channel_raster() -> None:
    assert channel_for_frequency(868_125_000, E22Band.MHZ_900) == 18
    assert channel_for_frequency(902_125_000, E22Band.MHZ_900) == 52
    assert channel_for_frequency(433_125_000, E22Band.MHZ_400) == 23
    with pytest.raises(ValueError, match="cannot tune"):
        channel_for_frequency(869_525_000, E22Band.MHZ_900)  # off the 1-MHz raster
    with pytest.raises(ValueError, match="cannot tune"):
        channel_for_frequency(931_125_000, E22Band.MHZ_900)


def test_power_below_the_lowest_step_is_refused() -> None:
    with pytest.raises(ValueError, match="below 10 dBm"):
        meshnode_config(
            band=E22Band.MHZ_900,
            frequency_hz=868_125_000,
            bandwidth_hz=125_000,
            spreading_factor=9,
            coding_rate=5,
            tx_power_dbm=5,
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [("uart_baud", 14400), ("air_rate_bps", 5000), ("tx_power_dbm", 20), ("channel", 81)],
)
def test_config_validation_names_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        E22Config(band=E22Band.MHZ_900, **{field: value})  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

configs = st.builds(
    E22Config,
    band=st.just(E22Band.MHZ_900),
    max_power_dbm=st.just(22),
    address=st.integers(0, 0xFFFF),
    net_id=st.integers(0, 0xFF),
    uart_baud=st.sampled_from(UART_BAUDS),
    parity=st.sampled_from(Parity),
    air_rate_bps=st.sampled_from(AIR_RATES_BPS),
    sub_packet_bytes=st.sampled_from(SUB_PACKET_SIZES),
    ambient_rssi=st.booleans(),
    tx_power_dbm=st.sampled_from(tx_power_steps_dbm(22)),
    channel=st.integers(0, 80),
    packet_rssi=st.booleans(),
    fixed_transmission=st.booleans(),
    relay=st.booleans(),
    lbt=st.booleans(),
    wor_transmitter=st.booleans(),
    wor_period_ms=st.sampled_from(WOR_PERIODS_MS),
)


@given(configs)
def test_config_round_trip(config: E22Config) -> None:
    encoded = encode_config(config)
    assert len(encoded) == 12
    assert decode_config(b"\xc1" + encoded[1:], band=E22Band.MHZ_900) == config


@given(st.binary(max_size=16))
def test_garbage_answer_gives_config_or_decode_error(data: bytes) -> None:
    try:
        config = decode_config(data, band=E22Band.MHZ_900)
    except DecodeError:
        return
    assert 0 <= config.channel <= 80

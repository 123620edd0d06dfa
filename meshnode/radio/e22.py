"""Ebyte E22 UART LoRa modules and the Waveshare SX1262/SX1268 HAT, in transparent mode.

Mode pins: the host drives M0 and M1 and watches AUX (low while busy); after a change it
waits for AUX high, then about 2 ms, before talking::

    mode            M1 M0   UART
    TRANSMISSION     0  0   transparent data at the configured baud
    WOR              0  1   wake-on-radio
    CONFIGURATION    1  0   9600 8N1 only, whatever the configured baud; commands below
    DEEP_SLEEP       1  1   nothing

Register commands (CONFIGURATION mode)::

    C0 addr len data..   write and save to flash        answer C1 addr len data..
    C2 addr len data..   write until power-off          answer C1 addr len data..
    C1 addr len          read                           answer C1 addr len data..
    anything malformed                                  answer FF FF FF
    C0 C1 C2 C3 00 02    (TRANSMISSION mode, needs REG1 bit 5) read ambient-noise and
                         last-packet RSSI               answer C1 00 02 noise last
                         dBm = byte - 256

Registers 00H..08H (``encode_config`` writes all nine, ``decode_config`` reads 00H..06H)::

    00H ADDH 01H ADDL  module address; 0xFFFF = broadcast and monitor (no filtering)
    02H NETID          network id; talking modules must match
    03H REG0  7-5      UART baud 1200, 2400, 4800, 9600 (default), 19200, 38400, 57600, 115200
              4-3      parity 00 8N1 (default), 01 8O1, 10 8E1, 11 = 8N1
              2-0      air data rate 0.3k, 1.2k, 2.4k (default), 4.8k, 9.6k, 19.2k, 38.4k,
                       62.5k bit/s (newer T22S parts read 000 and 001 as 2.4k)
    04H REG1  7-6      sub-packet 240 (default), 128, 64, 32 bytes
              5        ambient-noise RSSI readable with C0 C1 C2 C3
              4-2      reserved (T22S: bit 4 switches modes by UART command); written 0,
                       ignored when read
              1-0      TX power 22/17/13/10 dBm (T22 parts, Waveshare HAT), 30/27/24/21 (T30)
    05H REG2           channel: 900 series f = 850.125 + CH MHz (CH 0..80),
                       400 series f = 410.125 + CH MHz (CH 0..83)
    06H REG3  7        append one RSSI byte to every received packet
              6        fixed transmission: each write starts with ADDH ADDL CHAN of the target
              5 relay, 4 LBT (listen before talk), 3 WOR role (1 transmitter),
              2-0      WOR period (n + 1) x 500 ms (default 011 = 2000 ms)
    07H 08H CRYPT      key, write-only (reads as 0); meshnode writes 00 00

A 400-series factory default reads ``C0 00 09 00 00 00 62 00 17 03 00 00``. Sources: Ebyte
E22-400T22S1C and E22-900T22D manuals (register tables, C0/C1/C2 examples), E22-xxxT30S
manual (T30 power steps), Waveshare SX1262 LoRa HAT wiki and LoRa-HAT-Control page; summary in
the radio reference notes (radio.md) section 3.3.

What meshnode sends: at start, in CONFIGURATION mode, ``encode_read()``; if the answer
differs from the wanted ``E22Config``, ``encode_config(config, save=True)`` (C0, so a module
that browns out comes back with the same settings; writing only on change spares the flash)
and checks that the C1 echo decodes to the same config. meshnode's defaults: transparent
mode, address 0 and net id 0 on every node, sub-packet 240, LBT on, ambient RSSI on, the
per-packet RSSI byte off (an extra byte would land inside a frame that spans two
sub-packets and break its CRC), module encryption off (meshnode signs its own frames).

Transparent mode has no framing, length or CRC that the host can see: the sender cuts the
UART stream into sub-packets and the receiver may hand them on split or joined. meshnode
writes each link packet (``meshnode.radio.fragment``, which carries a CRC-16) as one
KISS data frame (``meshnode.radio.kiss``), in writes of at most ``sub_packet_bytes``
(``split_writes``), so the stream delimits itself however the modules cut it.

MTU: ``transparent_mtu_bytes(240)`` = 200 bytes of link packet, CRC included. KISS adds 3
(FEND, type byte, FEND), and the remaining 37 bytes (15 %) are kept for KISS escapes (one
extra byte per 0xC0 or 0xDB; random data needs 0.8 %), so a packet almost always fits one
sub-packet. A packet that escapes badly still arrives, as two sub-packets.

LoRa parameters: the module picks SF, bandwidth and coding rate behind each air-data-rate
preset and does not publish them; ``air_rate_for_lora`` chooses the preset nearest in
nominal bit rate to meshnode's SF/BW/CR, which keeps airtime and range in the same class
but is not on-air compatible with non-Ebyte radios. Not settable at all: SF, bandwidth and
coding rate on their own, preamble length, sync word, header mode, PHY CRC, low-data-rate
optimisation, power other than the four steps, and any frequency off the 1-MHz raster
(869.525 MHz is unreachable; 869.125 and 868.125 MHz are the nearest). Duty cycle is not
enforced by the module.

Other Ebyte families, not encoded here:

* E220 (LLCC68): M1 M0 = 11 is configuration; registers as above but without NETID (ADDH,
  ADDL, REG0, REG1, REG2, REG3, CRYPT), sub-packet 200/128/64/32, air rate 2.4k..62.5k.
* E32 (SX1276/78): M1 M0 = 11 (sleep) is configuration; ``C0`` + 5 bytes (ADDH ADDL SPED
  CHAN OPTION), read ``C1 C1 C1``, version ``C3 C3 C3``, reset ``C4 C4 C4``; 58-byte air
  packets, 512-byte buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum, IntEnum

from meshnode.errors import DecodeError

__all__ = [
    "AIR_RATES_BPS",
    "CONFIG_BAUD",
    "MTU_BYTES",
    "SUB_PACKET_SIZES",
    "UART_BAUDS",
    "WOR_PERIODS_MS",
    "E22Band",
    "E22Config",
    "E22Mode",
    "ModePins",
    "Parity",
    "air_rate_for_lora",
    "channel_for_frequency",
    "decode_config",
    "decode_rssi_answer",
    "encode_config",
    "encode_read",
    "encode_rssi_read",
    "lora_bit_rate_bps",
    "meshnode_config",
    "mode_pins",
    "rssi_dbm",
    "split_writes",
    "transparent_mtu_bytes",
    "tx_power_steps_dbm",
]

CONFIG_BAUD = 9600  # configuration mode talks 9600 8N1 whatever REG0 says
UART_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
AIR_RATES_BPS = (300, 1200, 2400, 4800, 9600, 19200, 38400, 62500)
SUB_PACKET_SIZES = (240, 128, 64, 32)
WOR_PERIODS_MS = tuple(500 * (n + 1) for n in range(8))
_POWER_STEPS_DBM = {22: (22, 17, 13, 10), 30: (30, 27, 24, 21)}

_WRITE_SAVE = 0xC0
_READ = 0xC1
_WRITE_TEMP = 0xC2
_REJECTED = b"\xff\xff\xff"
_READ_REGISTERS = 7  # 00H..06H; the CRYPT key is write-only
_ALL_REGISTERS = 9
_RSSI_READ = b"\xc0\xc1\xc2\xc3\x00\x02"
_KISS_FRAMING_BYTES = 3  # FEND, type byte, FEND


class E22Mode(Enum):
    """Operating mode chosen with the M0/M1 pins."""

    TRANSMISSION = "transmission"
    WOR = "wor"
    CONFIGURATION = "configuration"
    DEEP_SLEEP = "deep_sleep"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModePins:
    """Levels to drive on M0 and M1 (True = high)."""

    m0: bool
    m1: bool


_MODE_PINS = {
    E22Mode.TRANSMISSION: ModePins(m0=False, m1=False),
    E22Mode.WOR: ModePins(m0=True, m1=False),
    E22Mode.CONFIGURATION: ModePins(m0=False, m1=True),
    E22Mode.DEEP_SLEEP: ModePins(m0=True, m1=True),
}


def mode_pins(mode: E22Mode) -> ModePins:
    """M0/M1 levels for an E22 mode."""
    return _MODE_PINS[mode]


class Parity(IntEnum):
    """UART parity, as REG0 bits 4-3."""

    P8N1 = 0
    P8O1 = 1
    P8E1 = 2


class E22Band(Enum):
    """Frequency series of the module: base of channel 0 in Hz, highest channel."""

    MHZ_400 = (410_125_000, 83)
    MHZ_900 = (850_125_000, 80)

    @property
    def base_hz(self) -> int:
        """Frequency of channel 0."""
        return self.value[0]

    @property
    def max_channel(self) -> int:
        """Highest channel number."""
        return self.value[1]


_CHANNEL_STEP_HZ = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class E22Config:
    """Registers 00H..06H, plus the two facts the registers do not hold (band, power class)."""

    band: E22Band
    max_power_dbm: int = 22  # 22: T22 parts and the Waveshare HAT; 30: T30 parts
    address: int = 0
    net_id: int = 0
    uart_baud: int = 9600
    parity: Parity = Parity.P8N1
    air_rate_bps: int = 2400
    sub_packet_bytes: int = 240
    ambient_rssi: bool = False
    tx_power_dbm: int = 22
    channel: int = 0
    packet_rssi: bool = False
    fixed_transmission: bool = False
    relay: bool = False
    lbt: bool = False
    wor_transmitter: bool = False
    wor_period_ms: int = 2000

    def __post_init__(self) -> None:
        _check_member("max_power_dbm", self.max_power_dbm, tuple(_POWER_STEPS_DBM))
        _check_int("address", self.address, 0xFFFF)
        _check_int("net_id", self.net_id, 0xFF)
        _check_member("uart_baud", self.uart_baud, UART_BAUDS)
        _check_member("air_rate_bps", self.air_rate_bps, AIR_RATES_BPS)
        _check_member("sub_packet_bytes", self.sub_packet_bytes, SUB_PACKET_SIZES)
        _check_member("tx_power_dbm", self.tx_power_dbm, tx_power_steps_dbm(self.max_power_dbm))
        _check_int("channel", self.channel, self.band.max_channel)
        _check_member("wor_period_ms", self.wor_period_ms, WOR_PERIODS_MS)

    @property
    def frequency_hz(self) -> int:
        """Centre frequency of the configured channel."""
        return self.band.base_hz + self.channel * _CHANNEL_STEP_HZ


def _check_int(name: str, value: int, high: int) -> None:
    """ValueError naming the field unless 0 <= value <= high."""
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in 0..{high}, got {value}")


def _check_member(name: str, value: int, allowed: tuple[int, ...]) -> None:
    """ValueError naming the field unless value is one of allowed."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value}")


def tx_power_steps_dbm(max_power_dbm: int) -> tuple[int, ...]:
    """The four power steps of a 22-dBm or 30-dBm part, strongest first."""
    try:
        return _POWER_STEPS_DBM[max_power_dbm]
    except KeyError:
        raise ValueError(f"max_power_dbm must be 22 or 30, got {max_power_dbm}") from None


# Register encoding.


def _registers(config: E22Config) -> bytes:
    """The seven bytes of 00H..06H."""
    reg0 = (
        UART_BAUDS.index(config.uart_baud) << 5
        | config.parity << 3
        | AIR_RATES_BPS.index(config.air_rate_bps)
    )
    reg1 = (
        SUB_PACKET_SIZES.index(config.sub_packet_bytes) << 6
        | config.ambient_rssi << 5
        | tx_power_steps_dbm(config.max_power_dbm).index(config.tx_power_dbm)
    )
    reg3 = (
        config.packet_rssi << 7
        | config.fixed_transmission << 6
        | config.relay << 5
        | config.lbt << 4
        | config.wor_transmitter << 3
        | WOR_PERIODS_MS.index(config.wor_period_ms)
    )
    addh, addl = config.address >> 8, config.address & 0xFF
    return bytes((addh, addl, config.net_id, reg0, reg1, config.channel, reg3))


def encode_config(config: E22Config, *, save: bool = True) -> bytes:
    """Write command for registers 00H..08H: C0 (saved) or C2 (until power-off).

    Returns 12 bytes: command, start address 00, length 09, seven registers, CRYPT 00 00.
    """
    head = bytes((_WRITE_SAVE if save else _WRITE_TEMP, 0x00, _ALL_REGISTERS))
    return head + _registers(config) + b"\x00\x00"


def encode_read() -> bytes:
    """Read command for registers 00H..06H: C1 00 07."""
    return bytes((_READ, 0x00, _READ_REGISTERS))


def decode_config(answer: bytes, *, band: E22Band, max_power_dbm: int = 22) -> E22Config:
    """Decode the C1 answer to a read (C1 00 07 ..) or to a write (C1 00 09 ..).

    Args:
        answer: the whole answer, header included.
        band, max_power_dbm: which part this is; the registers do not say.

    Raises:
        DecodeError: FF FF FF (the module refused the command), a wrong header or length,
            or a channel the band does not have.
    """
    if answer == _REJECTED:
        raise DecodeError("E22 refused the command (FF FF FF): wrong mode or baud?")
    if len(answer) < 3 or answer[0] != _READ or answer[1] != 0x00:
        raise DecodeError(f"E22 answer {answer[:3].hex()} is not C1 00 ..")
    count = answer[2]
    if count not in (_READ_REGISTERS, _ALL_REGISTERS) or len(answer) != 3 + count:
        raise DecodeError(f"E22 answer announces {count} registers and has {len(answer) - 3}")
    regs = answer[3:]
    if regs[5] > band.max_channel:
        raise DecodeError(f"E22 channel {regs[5]} outside 0..{band.max_channel}")
    return _config_from_registers(regs, band=band, max_power_dbm=max_power_dbm)


def _config_from_registers(regs: bytes, *, band: E22Band, max_power_dbm: int) -> E22Config:
    """Fields of registers 00H..06H (every bit pattern is valid here)."""
    reg0, reg1, reg3 = regs[3], regs[4], regs[6]
    parity = (reg0 >> 3) & 0b11
    return E22Config(
        band=band,
        max_power_dbm=max_power_dbm,
        address=regs[0] << 8 | regs[1],
        net_id=regs[2],
        uart_baud=UART_BAUDS[reg0 >> 5],
        parity=Parity(0 if parity == 0b11 else parity),  # 11 means 8N1, like 00
        air_rate_bps=AIR_RATES_BPS[reg0 & 0b111],
        sub_packet_bytes=SUB_PACKET_SIZES[reg1 >> 6],
        ambient_rssi=bool(reg1 & 0x20),
        tx_power_dbm=tx_power_steps_dbm(max_power_dbm)[reg1 & 0b11],
        channel=regs[5],
        packet_rssi=bool(reg3 & 0x80),
        fixed_transmission=bool(reg3 & 0x40),
        relay=bool(reg3 & 0x20),
        lbt=bool(reg3 & 0x10),
        wor_transmitter=bool(reg3 & 0x08),
        wor_period_ms=WOR_PERIODS_MS[reg3 & 0b111],
    )


def encode_rssi_read() -> bytes:
    """Read ambient-noise and last-packet RSSI in TRANSMISSION mode: C0 C1 C2 C3 00 02."""
    return _RSSI_READ


def rssi_dbm(raw: int) -> int:
    """dBm of an E22 RSSI byte: -(256 - raw)."""
    if not 0 <= raw <= 0xFF:
        raise ValueError(f"RSSI byte {raw} outside 0..255")
    return raw - 256


def decode_rssi_answer(answer: bytes) -> tuple[int, int]:
    """(noise_dbm, last_packet_dbm) from C1 00 02 noise last; DecodeError otherwise."""
    if len(answer) != 5 or answer[:3] != b"\xc1\x00\x02":
        raise DecodeError(f"E22 RSSI answer {answer.hex()} is not C1 00 02 xx xx")
    return rssi_dbm(answer[3]), rssi_dbm(answer[4])


# Transparent stream.


def transparent_mtu_bytes(sub_packet_bytes: int = 240) -> int:
    """Largest link packet per sub-packet size: 240 -> 200, 128 -> 106, 64 -> 53, 32 -> 26."""
    _check_member("sub_packet_bytes", sub_packet_bytes, SUB_PACKET_SIZES)
    # Five sixths: the KISS framing bytes and room for escapes share the last sixth.
    mtu = sub_packet_bytes * 5 // 6
    assert mtu + _KISS_FRAMING_BYTES < sub_packet_bytes
    return mtu


MTU_BYTES = transparent_mtu_bytes(240)


def split_writes(stream: bytes, sub_packet_bytes: int = 240) -> list[bytes]:
    """Cut already-framed bytes into writes of at most one sub-packet each."""
    _check_member("sub_packet_bytes", sub_packet_bytes, SUB_PACKET_SIZES)
    return [stream[i : i + sub_packet_bytes] for i in range(0, len(stream), sub_packet_bytes)]


# meshnode's LoRa parameters -> module settings.


def lora_bit_rate_bps(spreading_factor: int, bandwidth_hz: int, coding_rate: int) -> float:
    """Nominal LoRa bit rate SF x BW / 2^SF x 4 / CR (CR 5..8 = 4/5..4/8)."""
    return spreading_factor * bandwidth_hz / (1 << spreading_factor) * 4 / coding_rate


def air_rate_for_lora(spreading_factor: int, bandwidth_hz: int, coding_rate: int) -> int:
    """The air-data-rate preset nearest (by ratio) to the LoRa bit rate; ties go slower."""
    target = lora_bit_rate_bps(spreading_factor, bandwidth_hz, coding_rate)
    return min(AIR_RATES_BPS, key=lambda rate: (abs(math.log(rate / target)), rate))


def channel_for_frequency(frequency_hz: int, band: E22Band) -> int:
    """Channel number of a frequency; ValueError if it is off the 1-MHz raster or band."""
    offset = frequency_hz - band.base_hz
    channel, rest = divmod(offset, _CHANNEL_STEP_HZ)
    if rest or not 0 <= channel <= band.max_channel:
        low = band.base_hz
        high = low + band.max_channel * _CHANNEL_STEP_HZ
        raise ValueError(
            f"E22 cannot tune {frequency_hz} Hz: channels are {low} + n x 1 MHz up to {high}"
        )
    return channel


def meshnode_config(
    *,
    band: E22Band,
    frequency_hz: int,
    bandwidth_hz: int,
    spreading_factor: int,
    coding_rate: int,
    tx_power_dbm: int,
    max_power_dbm: int = 22,
    uart_baud: int = 9600,
) -> E22Config:
    """meshnode's E22 settings for its LoRa parameters: the strongest step <= tx_power_dbm."""
    steps = [p for p in tx_power_steps_dbm(max_power_dbm) if p <= tx_power_dbm]
    if not steps:
        lowest = tx_power_steps_dbm(max_power_dbm)[-1]
        raise ValueError(f"E22 cannot go below {lowest} dBm, asked for {tx_power_dbm}")
    return E22Config(
        band=band,
        max_power_dbm=max_power_dbm,
        uart_baud=uart_baud,
        air_rate_bps=air_rate_for_lora(spreading_factor, bandwidth_hz, coding_rate),
        ambient_rssi=True,
        tx_power_dbm=steps[0],
        channel=channel_for_frequency(frequency_hz, band),
        lbt=True,
    )

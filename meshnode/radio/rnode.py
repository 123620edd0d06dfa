"""RNode (Reticulum's LoRa modem firmware) over KISS: host commands, device reports, MTU 254.

Link: USB serial at 115200 8N1. Every message, both ways, is one KISS frame whose first
byte is the RNode command code itself (not KISS's port << 4 | command)::

    FEND (0xC0) || escape(command (1 B) || argument) || FEND (0xC0)

Escaping is plain KISS (0xC0 -> DB DC, 0xDB -> DB DD); ``meshnode.radio.kiss`` does it,
reading the code as port and command nibbles. Multi-byte integers are big-endian.

    cmd           code  host -> RNode                       RNode -> host
    DATA          0x00  one LoRa packet, 1..254 B here      one received packet
    FREQUENCY     0x01  uint32 Hz (0 asks)                  uint32 Hz (echo)
    BANDWIDTH     0x02  uint32 Hz (0 asks)                  uint32 Hz (echo)
    TX_POWER      0x03  uint8 dBm, 0..37 (0xFF asks)        uint8 dBm (echo)
    SF            0x04  uint8 5..12 (0xFF asks)             uint8 (echo)
    CR            0x05  uint8 5..8 = 4/5..4/8 (0xFF asks)   uint8 (echo)
    RADIO_STATE   0x06  0x00 off, 0x01 on, 0xFF asks        0x00 / 0x01
    RADIO_LOCK    0x07  -                                   0x01 while locked
    DETECT        0x08  0x73                                0x46
    LEAVE         0x0A  0xFF (host goes away)               -
    ST_ALOCK      0x0B  uint16 = percent x 100 (~15 s)      uint16 (echo)
    LT_ALOCK      0x0C  uint16 = percent x 100 (60 min)     uint16 (echo)
    READY         0x0F  -                                   0x01 ready / 0x00 busy
    STAT_RX/TX    0x21/22  -                                uint32 packet counters
    STAT_RSSI     0x23  -                                   uint8; dBm = byte - 157
    STAT_SNR      0x24  -                                   int8; dB = value / 4
    STAT_CHTM     0x25  -                                   4 x uint16 percent x 100
                        (airtime short/long, channel load short/long), newer firmware
                        appends 3 bytes that are ignored here
    PLATFORM/MCU  0x48/49  0x00 asks                        uint8
    FW_VERSION    0x50  0x00 asks                           major, minor
    ERROR         0x90  -                                   uint8 code (see ErrorReported)

Sources: markqvist/RNode_Firmware ``Framing.h`` and ``RNode_Firmware.ino`` serialCallback;
markqvist/Reticulum ``RNS/Interfaces/RNodeInterface.py`` (RSSI_OFFSET 157, SNR x 0.25,
setSTALock/setLTALock), via the radio reference notes (radio.md) section 3.2.

Bring-up (the shell sleeps and times; this module only makes bytes): open the port, wait
about 2 s (many boards reset on open), write ``detect_commands()``, expect
``DeviceDetected`` and ``FirmwareReported``, write ``configure_commands(params)`` (frequency,
bandwidth, TX power, SF, CR, optional airtime locks, radio on), then check the echoes with
``mismatched_settings``. A received packet arrives as STAT_RSSI, STAT_SNR, DATA; the parser
folds the two reports into the ``PacketReceived`` that follows them.

MTU: 254 bytes. The LoRa PHY payload is at most 255 B and RNode spends 1 B of every packet
on its header (sequence nibble, split flag). Packets of 255..508 B go out as two LoRa
packets that both must arrive; meshnode keeps one frame per LoRa packet, so a loss costs
one frame and airtime stays predictable. RNode keeps the LoRa PHY CRC on and drops damaged
packets; meshnode's link packets (``meshnode.radio.fragment``) carry a CRC-16 besides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.radio.kiss import KissDecoder, encode_kiss

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AIR_HEADER_BYTES",
    "BAUD",
    "DETECT_REQUEST",
    "DETECT_RESPONSE",
    "FREQUENCY_TOLERANCE_HZ",
    "HW_MTU_BYTES",
    "MTU_BYTES",
    "RSSI_OFFSET_DB",
    "ChannelStatsReported",
    "DeviceDetected",
    "ErrorReported",
    "FirmwareReported",
    "PacketReceived",
    "RNodeCommand",
    "RNodeEvent",
    "RNodeParams",
    "RNodeParser",
    "RadioState",
    "ReadyReported",
    "RssiReported",
    "SettingReported",
    "SnrReported",
    "configure_commands",
    "decode_frame",
    "detect_commands",
    "encode_command",
    "encode_data",
    "leave_commands",
    "mismatched_settings",
    "preamble_symbols",
]

BAUD = 115200
MTU_BYTES = 254
AIR_HEADER_BYTES = 1  # the firmware puts one byte of its own before each LoRa payload
HW_MTU_BYTES = 508
RSSI_OFFSET_DB = 157
DETECT_REQUEST = 0x73
DETECT_RESPONSE = 0x46
FREQUENCY_TOLERANCE_HZ = 100  # Reticulum accepts an echo within +-100 Hz
_MAX_FRAME_BYTES = 1024  # bigger than any DATA (508) or report this module decodes


class RNodeCommand(IntEnum):
    """First byte of an RNode KISS frame."""

    DATA = 0x00
    FREQUENCY = 0x01
    BANDWIDTH = 0x02
    TX_POWER = 0x03
    SF = 0x04
    CR = 0x05
    RADIO_STATE = 0x06
    RADIO_LOCK = 0x07
    DETECT = 0x08
    IMPLICIT = 0x09
    LEAVE = 0x0A
    ST_ALOCK = 0x0B
    LT_ALOCK = 0x0C
    PROMISC = 0x0E
    READY = 0x0F
    STAT_RX = 0x21
    STAT_TX = 0x22
    STAT_RSSI = 0x23
    STAT_SNR = 0x24
    STAT_CHTM = 0x25
    RANDOM = 0x40
    PLATFORM = 0x48
    MCU = 0x49
    FW_VERSION = 0x50
    RESET = 0x55
    ERROR = 0x90


_KNOWN_CODES = frozenset(int(c) for c in RNodeCommand)


class RadioState(IntEnum):
    """Argument of RADIO_STATE."""

    OFF = 0x00
    ON = 0x01


# Reports that carry one big-endian unsigned integer, and its width in bytes.
_INT_WIDTH: Mapping[RNodeCommand, int] = {
    RNodeCommand.FREQUENCY: 4,
    RNodeCommand.BANDWIDTH: 4,
    RNodeCommand.TX_POWER: 1,
    RNodeCommand.SF: 1,
    RNodeCommand.CR: 1,
    RNodeCommand.RADIO_STATE: 1,
    RNodeCommand.RADIO_LOCK: 1,
    RNodeCommand.IMPLICIT: 1,
    RNodeCommand.PROMISC: 1,
    RNodeCommand.ST_ALOCK: 2,
    RNodeCommand.LT_ALOCK: 2,
    RNodeCommand.STAT_RX: 4,
    RNodeCommand.STAT_TX: 4,
    RNodeCommand.RANDOM: 1,
    RNodeCommand.PLATFORM: 1,
    RNodeCommand.MCU: 1,
}

_ERROR_MEANINGS: Mapping[int, str] = {
    0x01: "radio initialisation failed",
    0x02: "transmit failed (radio off?)",
    0x03: "EEPROM locked (device not provisioned)",
    0x04: "transmit queue full",
    0x05: "memory low",
    0x06: "modem timeout",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RNodeParams:
    """Radio settings meshnode sends to an RNode."""

    frequency_hz: int
    bandwidth_hz: int
    spreading_factor: int
    coding_rate: int  # 5..8 = 4/5..4/8
    tx_power_dbm: int
    airtime_limit_short_pct: float | None = None  # ST_ALOCK, over ~15 s
    airtime_limit_long_pct: float | None = None  # LT_ALOCK, over 60 min: 1.0 or 10.0 in EU

    def __post_init__(self) -> None:
        _check_range("frequency_hz", self.frequency_hz, 137_000_000, 3_000_000_000)
        _check_range("bandwidth_hz", self.bandwidth_hz, 7_800, 1_625_000)
        _check_range("spreading_factor", self.spreading_factor, 5, 12)
        _check_range("coding_rate", self.coding_rate, 5, 8)
        _check_range("tx_power_dbm", self.tx_power_dbm, 0, 37)
        for name in ("airtime_limit_short_pct", "airtime_limit_long_pct"):
            pct = getattr(self, name)
            if pct is not None and not 0.0 < pct <= 100.0:
                raise ValueError(f"{name} must be in (0, 100], got {pct}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """ValueError naming the field when value is outside low..high."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


# Events: what the device said, decoded.


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDetected:
    """The device answered DETECT with 0x46: an RNode is listening."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingReported:
    """An integer the device reported or echoed (units per the module table)."""

    command: RNodeCommand
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareReported:
    """Firmware version; Reticulum needs at least 1.52."""

    major: int
    minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyReported:
    """Flow control: whether the device takes another DATA frame now."""

    ready: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReported:
    """The device reported an error."""

    code: int

    @property
    def meaning(self) -> str:
        """Human text for the code."""
        return _ERROR_MEANINGS.get(self.code, f"unknown error 0x{self.code:02x}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatsReported:
    """Airtime and channel load the device measured, in percent."""

    airtime_short_pct: float
    airtime_long_pct: float
    channel_load_short_pct: float
    channel_load_long_pct: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RssiReported:
    """Signal strength of the packet about to be delivered."""

    rssi_dbm: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SnrReported:
    """Signal-to-noise ratio of the packet about to be delivered."""

    snr_db: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketReceived:
    """One LoRa packet heard, with the RSSI and SNR reported just before it."""

    data: bytes
    rssi_dbm: int | None = None
    snr_db: float | None = None


RNodeEvent = (
    DeviceDetected
    | SettingReported
    | FirmwareReported
    | ReadyReported
    | ErrorReported
    | ChannelStatsReported
    | RssiReported
    | SnrReported
    | PacketReceived
)


# Host -> device.


def encode_command(command: int, argument: bytes = b"") -> bytes:
    """One KISS frame: FEND, escaped command code and argument, FEND."""
    if not 0 <= command <= 0xFE:
        raise ValueError(f"RNode command code {command} outside 0..254")
    # kiss.py splits the type byte into port and command nibbles; RNode reads it whole.
    return encode_kiss(argument, command=command & 0x0F, port=command >> 4)


def encode_data(payload: bytes) -> bytes:
    """A DATA frame carrying one packet of 1..MTU_BYTES bytes."""
    if not 1 <= len(payload) <= MTU_BYTES:
        raise ValueError(f"RNode packet of {len(payload)} bytes, must be 1..{MTU_BYTES}")
    return encode_command(RNodeCommand.DATA, payload)


def detect_commands() -> list[bytes]:
    """DETECT, then ask for firmware version, platform and MCU."""
    return [
        encode_command(RNodeCommand.DETECT, bytes((DETECT_REQUEST,))),
        encode_command(RNodeCommand.FW_VERSION, b"\x00"),
        encode_command(RNodeCommand.PLATFORM, b"\x00"),
        encode_command(RNodeCommand.MCU, b"\x00"),
    ]


def configure_commands(params: RNodeParams) -> list[bytes]:
    """Frames that set every radio parameter, in Reticulum's order, then switch the radio on."""
    frames = [
        encode_command(RNodeCommand.FREQUENCY, params.frequency_hz.to_bytes(4, "big")),
        encode_command(RNodeCommand.BANDWIDTH, params.bandwidth_hz.to_bytes(4, "big")),
        encode_command(RNodeCommand.TX_POWER, bytes((params.tx_power_dbm,))),
        encode_command(RNodeCommand.SF, bytes((params.spreading_factor,))),
        encode_command(RNodeCommand.CR, bytes((params.coding_rate,))),
    ]
    for command, pct in (
        (RNodeCommand.ST_ALOCK, params.airtime_limit_short_pct),
        (RNodeCommand.LT_ALOCK, params.airtime_limit_long_pct),
    ):
        if pct is not None:
            frames.append(encode_command(command, _pct_to_wire(pct).to_bytes(2, "big")))
    frames.append(encode_command(RNodeCommand.RADIO_STATE, bytes((RadioState.ON,))))
    return frames


def leave_commands() -> list[bytes]:
    """Switch the radio off and tell the device the host is leaving."""
    return [
        encode_command(RNodeCommand.RADIO_STATE, bytes((RadioState.OFF,))),
        encode_command(RNodeCommand.LEAVE, b"\xff"),
    ]


def preamble_symbols(spreading_factor: int, bandwidth_hz: float) -> int:
    """The preamble an RNode sends: at least 18 symbols and at least 24 ms (radio.md 3)."""
    symbol_ms = 1000 * (1 << spreading_factor) / bandwidth_hz
    return max(18, math.ceil(24 / symbol_ms))


def _pct_to_wire(pct: float) -> int:
    """Percent as the uint16 'percent x 100' RNode uses (Reticulum truncates too)."""
    return int(pct * 100)


def mismatched_settings(
    params: RNodeParams, reported: Mapping[RNodeCommand, int]
) -> list[RNodeCommand]:
    """Settings whose echo is missing or differs from params (frequency within 100 Hz)."""
    wanted: dict[RNodeCommand, int] = {
        RNodeCommand.FREQUENCY: params.frequency_hz,
        RNodeCommand.BANDWIDTH: params.bandwidth_hz,
        RNodeCommand.TX_POWER: params.tx_power_dbm,
        RNodeCommand.SF: params.spreading_factor,
        RNodeCommand.CR: params.coding_rate,
        RNodeCommand.RADIO_STATE: RadioState.ON,
    }
    bad = []
    for command, value in wanted.items():
        got = reported.get(command)
        slack = FREQUENCY_TOLERANCE_HZ if command is RNodeCommand.FREQUENCY else 0
        if got is None or abs(got - value) > slack:
            bad.append(command)
    return bad


# Device -> host.


def decode_frame(frame: bytes) -> RNodeEvent:
    """Decode one unescaped frame (command byte, then argument).

    Raises:
        DecodeError: empty frame, unknown command, or an argument of the wrong length.
    """
    if not frame:
        raise DecodeError("empty RNode frame")
    try:
        command = RNodeCommand(frame[0])
    except ValueError:
        raise DecodeError(f"unknown RNode command 0x{frame[0]:02x}") from None
    arg = frame[1:]
    width = _INT_WIDTH.get(command)
    if width is not None:
        _expect_length(command, arg, width)
        return SettingReported(command=command, value=int.from_bytes(arg, "big"))
    return _decode_special(command, arg)


def _decode_special(command: RNodeCommand, arg: bytes) -> RNodeEvent:
    """Reports whose argument is not one plain integer."""
    if command is RNodeCommand.DATA:
        if not arg:
            raise DecodeError("empty RNode DATA frame")
        return PacketReceived(data=arg)
    if command is RNodeCommand.STAT_RSSI:
        _expect_length(command, arg, 1)
        return RssiReported(rssi_dbm=arg[0] - RSSI_OFFSET_DB)
    if command is RNodeCommand.STAT_SNR:
        _expect_length(command, arg, 1)
        return SnrReported(snr_db=int.from_bytes(arg, "big", signed=True) / 4)
    if command is RNodeCommand.DETECT:
        if arg != bytes((DETECT_RESPONSE,)):
            raise DecodeError(f"RNode DETECT answer {arg.hex()} is not 46")
        return DeviceDetected()
    if command is RNodeCommand.FW_VERSION:
        _expect_length(command, arg, 2)
        return FirmwareReported(major=arg[0], minor=arg[1])
    if command is RNodeCommand.READY:
        if len(arg) > 1:
            raise DecodeError(f"RNode READY with {len(arg)} bytes")
        return ReadyReported(ready=arg != b"\x00")  # no byte: old firmware, means ready
    if command is RNodeCommand.ERROR:
        _expect_length(command, arg, 1)
        return ErrorReported(code=arg[0])
    if command is RNodeCommand.STAT_CHTM:
        return _decode_channel_stats(arg)
    raise DecodeError(f"RNode command {command.name} is host-to-device only")


def _decode_channel_stats(arg: bytes) -> ChannelStatsReported:
    """Four uint16 'percent x 100' values; newer firmware's extra bytes are ignored."""
    if len(arg) < 8:
        raise DecodeError(f"RNode STAT_CHTM with {len(arg)} bytes, need at least 8")
    ats, atl, cus, cul = (int.from_bytes(arg[i : i + 2], "big") / 100 for i in range(0, 8, 2))
    return ChannelStatsReported(
        airtime_short_pct=ats,
        airtime_long_pct=atl,
        channel_load_short_pct=cus,
        channel_load_long_pct=cul,
    )


def _expect_length(command: RNodeCommand, arg: bytes, length: int) -> None:
    """DecodeError unless the argument has exactly length bytes."""
    if len(arg) != length:
        raise DecodeError(f"RNode {command.name} with {len(arg)} bytes, expected {length}")


class RNodeParser:
    """Streaming parser for what an RNode sends: chunks in, events out; never raises."""

    def __init__(self, max_frame_bytes: int = _MAX_FRAME_BYTES) -> None:
        self._kiss = KissDecoder(max_frame_bytes)
        self.malformed_frames = 0  # known command, bad argument
        self.unknown_frames = 0  # command code this module does not decode
        self._rssi_dbm: int | None = None
        self._snr_db: float | None = None

    @property
    def dropped_frames(self) -> int:
        """Frames the KISS layer discarded (bad escape, oversize)."""
        return sum(self._kiss.dropped.values())

    def feed(self, chunk: bytes) -> list[RNodeEvent]:
        """Add bytes from the device; return the events now complete."""
        events: list[RNodeEvent] = []
        for frame in self._kiss.feed(chunk):
            body = bytes((frame.type_byte,)) + frame.data
            try:
                event = decode_frame(body)
            except DecodeError:
                if body[0] in _KNOWN_CODES:
                    self.malformed_frames += 1
                else:
                    self.unknown_frames += 1
                continue
            routed = self._route(event)
            if routed is not None:
                events.append(routed)
        return events

    def _route(self, event: RNodeEvent) -> RNodeEvent | None:
        """Hold RSSI/SNR for the next packet; attach them to it."""
        if isinstance(event, RssiReported):
            self._rssi_dbm = event.rssi_dbm
            return None
        if isinstance(event, SnrReported):
            self._snr_db = event.snr_db
            return None
        if isinstance(event, PacketReceived):
            event = replace(event, rssi_dbm=self._rssi_dbm, snr_db=self._snr_db)
            self._rssi_dbm = self._snr_db = None
        return event

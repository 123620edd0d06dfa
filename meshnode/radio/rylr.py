"""REYAX RYLR896 / RYLR998 LoRa modules: AT commands out, text lines in, MTU 180.

Link: UART, 115200 8N1 by default (``AT+IPR``). Every command ends in CR LF; every answer
is one CR LF line. Commands meshnode sends, one at a time, each waiting for ``+OK``::

    AT+ADDRESS=<0..65535>          own address (saved in flash)
    AT+NETWORKID=<id>              only equal ids talk (saved in flash)
    AT+BAND=<Hz>                   centre frequency (RYLR896: not kept over power-off)
    AT+PARAMETER=<SF>,<BW>,<CR>,<preamble>
    AT+CRFOP=<dBm>                 output power
    AT+SEND=<address>,<length>,<data>   address 0 = every module with the same network id

    parameter        RYLR896 (SX1276)              RYLR998 (SX1262-class)
    SF               7..12                         5..11; at most 9 at 125 kHz, 10 at
                                                   250 kHz, 11 at 500 kHz
    BW code          0..9 = 7.8, 10.4, 15.6, 20.8,  7, 8, 9 = 125, 250, 500 kHz
                     31.25, 41.7, 62.5, 125, 250,
                     500 kHz
    CR code          1..4 = 4/5..4/8               1..4 = 4/5..4/8
    preamble         4..7                          12; 4..24 only with network id 18
    network id       0..16 (1..15 recommended)     3..15 or 18 (default)
    CRFOP            0..15 dBm                     0..22 dBm (REYAX: below 14 for CE)

Lines the module sends::

    +OK                                    command done
    +ERR=<n>                               command failed (see ERROR_MEANINGS)
    +READY                                 after power-on or AT+RESET
    +RCV=<address>,<length>,<data>,<RSSI dBm>,<SNR dB>   a packet was heard
    +<NAME>=<value>                        answer to a query such as AT+BAND?

meshnode sends every packet to address 0 and uses network id 18 with preamble 12 on the
RYLR998, network id 6 with preamble 7 on the RYLR896 (``meshnode_params``). No setting is
valid on both models, so a meshnode REYAX mesh uses one model throughout. AT+BAND and
AT+PARAMETER are sent at every start (the RYLR896 forgets them at power-off); ADDRESS and
NETWORKID go to flash, so the shell asks ``FLASH_QUERIES`` first and passes the answers to
``configure_commands``, which then leaves out what already matches.

Sources: REYAX "LoRa AT command guide" for RYLR998/RYLR498 (2021, 2023) and for
RYLR896/RYLR406 (2018, 2022), via the radio reference notes (radio.md) section 3.4 and the
command summaries that drivers built on those guides quote.

Binary payloads: the guides define the data field as ASCII and AT+SEND allows at most 240
characters; parsers on both sides cut fields at commas and lines at CR LF. meshnode sends
standard base64 without padding (alphabet A-Z a-z 0-9 + /): no comma, CR, LF, '=' or '?'
can appear, the length is already in the command, and 4 characters carry 3 bytes. 240
characters carry 180 bytes, hence MTU 180. (Ascii85 would carry 192 bytes but uses
punctuation the guides never promise to pass through.) On air the module adds its own
8-byte header: a full frame is 248 bytes of LoRa payload.

``RylrParser`` reads lines from the module and never raises: garbage, lines too long,
malformed ``+RCV`` lines and payloads that are not meshnode's base64 are counted and
skipped, and results do not depend on how the input is chunked.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AIR_HEADER_BYTES",
    "BANDWIDTH_CODES_HZ",
    "BAUD",
    "BROADCAST_ADDRESS",
    "ERROR_MEANINGS",
    "FLASH_QUERIES",
    "MAX_DATA_CHARS",
    "MTU_BYTES",
    "PROBE",
    "CommandAccepted",
    "CommandRejected",
    "ModuleRestarted",
    "PacketReceived",
    "RylrEvent",
    "RylrModel",
    "RylrParams",
    "RylrParser",
    "SettingReported",
    "configure_commands",
    "decode_payload",
    "encode_payload",
    "encode_send",
    "meshnode_params",
]

BAUD = 115200
MAX_DATA_CHARS = 240
MTU_BYTES = MAX_DATA_CHARS * 3 // 4  # 180
AIR_HEADER_BYTES = 8  # the module's own header before the text on the air
BROADCAST_ADDRESS = 0
PROBE = b"AT\r\n"
_MAX_LINE_BYTES = 512  # "+RCV=65535,240,<240 chars>,-120,-20" is about 265
_EOL = b"\r\n"

BANDWIDTH_CODES_HZ: Mapping[int, int] = {
    0: 7_800,
    1: 10_400,
    2: 15_600,
    3: 20_800,
    4: 31_250,
    5: 41_700,
    6: 62_500,
    7: 125_000,
    8: 250_000,
    9: 500_000,
}

ERROR_MEANINGS: Mapping[int, str] = {
    1: "no CR LF at the end of the command",
    2: "the command does not start with AT",
    3: "no '=' in the command",
    4: "unknown command",
    5: "data length does not match the length field",
    10: "transmit timed out",
    12: "CRC error",
    13: "data longer than 240 bytes",
    14: "flash write failed",
    15: "unknown failure",
    17: "previous transmission not finished",
    18: "preamble value not allowed",
    19: "receive failed: header error",
    20: "smart-receive power-saving time not allowed",
}


class RylrModel(Enum):
    """Which REYAX module; they encode AT+PARAMETER differently."""

    RYLR896 = "rylr896"
    RYLR998 = "rylr998"


@dataclass(frozen=True, slots=True, kw_only=True)
class RylrParams:
    """Settings meshnode sends to a REYAX module."""

    model: RylrModel
    frequency_hz: int
    bandwidth_hz: int
    spreading_factor: int
    coding_rate: int  # 5..8 = 4/5..4/8; sent as code 1..4
    tx_power_dbm: int
    network_id: int
    preamble: int
    address: int = 0

    def __post_init__(self) -> None:
        _check("address", self.address, range(0x10000))
        _check("frequency_hz", self.frequency_hz, range(137_000_000, 1_020_000_001))
        _check("coding_rate", self.coding_rate, range(5, 9))
        if self.bandwidth_hz not in BANDWIDTH_CODES_HZ.values():
            raise ValueError(f"bandwidth_hz {self.bandwidth_hz} is not a LoRa bandwidth")
        if self.model is RylrModel.RYLR896:
            self._check_rylr896()
        else:
            self._check_rylr998()

    def _check_rylr896(self) -> None:
        """Ranges from the RYLR896/RYLR406 guide."""
        _check("spreading_factor", self.spreading_factor, range(7, 13))
        _check("preamble", self.preamble, range(4, 8))
        _check("network_id", self.network_id, range(17))
        _check("tx_power_dbm", self.tx_power_dbm, range(16))

    def _check_rylr998(self) -> None:
        """Ranges from the RYLR998/RYLR498 guide."""
        max_sf = {125_000: 9, 250_000: 10, 500_000: 11}.get(self.bandwidth_hz)
        if max_sf is None:
            bw = self.bandwidth_hz
            raise ValueError(f"RYLR998 bandwidth_hz must be 125, 250 or 500 kHz, got {bw}")
        _check("spreading_factor", self.spreading_factor, range(5, max_sf + 1))
        _check("network_id", self.network_id, (*range(3, 16), 18))
        allowed = range(4, 25) if self.network_id == 18 else (12,)
        _check("preamble", self.preamble, allowed)
        _check("tx_power_dbm", self.tx_power_dbm, range(23))

    @property
    def bandwidth_code(self) -> int:
        """The BW code AT+PARAMETER takes."""
        return next(c for c, hz in BANDWIDTH_CODES_HZ.items() if hz == self.bandwidth_hz)


# meshnode's network id and preamble per model: RYLR998's defaults (id 18 allows any
# preamble), and for RYLR896 the guide's example id 6 with its recommended preamble 7.
# The two models cannot share a channel: no (id, preamble) pair is valid on both.
_MESHNODE_IDS = {RylrModel.RYLR896: (6, 7), RylrModel.RYLR998: (18, 12)}


def meshnode_params(
    model: RylrModel,
    *,
    frequency_hz: int,
    bandwidth_hz: int,
    spreading_factor: int,
    coding_rate: int,
    tx_power_dbm: int,
    address: int = 0,
) -> RylrParams:
    """meshnode's settings for a model: its LoRa parameters plus a fixed network id and preamble."""
    network_id, preamble = _MESHNODE_IDS[model]
    return RylrParams(
        model=model,
        frequency_hz=frequency_hz,
        bandwidth_hz=bandwidth_hz,
        spreading_factor=spreading_factor,
        coding_rate=coding_rate,
        tx_power_dbm=tx_power_dbm,
        network_id=network_id,
        preamble=preamble,
        address=address,
    )


def _check(name: str, value: int, allowed: range | tuple[int, ...]) -> None:
    """ValueError naming the field unless value is allowed."""
    if value not in allowed:
        shown = f"{allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range) else allowed
        raise ValueError(f"{name} must be in {shown}, got {value}")


def _command(text: str) -> bytes:
    """An AT command line."""
    return text.encode("ascii") + _EOL


FLASH_QUERIES = (b"AT+ADDRESS?\r\n", b"AT+NETWORKID?\r\n")
# Answer names for the flash-stored settings; one RYLR998 driver quotes "+NETWORK=".
_FLASH_NAMES = {"ADDRESS": ("ADDRESS",), "NETWORKID": ("NETWORKID", "NETWORK")}


def configure_commands(
    params: RylrParams, reported: Mapping[str, str] | None = None
) -> list[bytes]:
    """AT lines that set address, network id, frequency, modem parameters and power.

    ``reported`` maps SettingReported names to values from FLASH_QUERIES; ADDRESS and
    NETWORKID lines whose value already matches are left out, to spare the flash.
    """
    known = reported or {}
    modem = (
        f"{params.spreading_factor},{params.bandwidth_code},"
        f"{params.coding_rate - 4},{params.preamble}"
    )
    lines = []
    for name, value in (("ADDRESS", params.address), ("NETWORKID", params.network_id)):
        if all(known.get(alias) != str(value) for alias in _FLASH_NAMES[name]):
            lines.append(_command(f"AT+{name}={value}"))
    return [
        *lines,
        _command(f"AT+BAND={params.frequency_hz}"),
        _command(f"AT+PARAMETER={modem}"),
        _command(f"AT+CRFOP={params.tx_power_dbm}"),
    ]


def encode_payload(payload: bytes) -> str:
    """Unpadded standard base64 of 1..MTU_BYTES bytes."""
    if not 1 <= len(payload) <= MTU_BYTES:
        raise ValueError(f"REYAX payload of {len(payload)} bytes, must be 1..{MTU_BYTES}")
    return base64.b64encode(payload).decode("ascii").rstrip("=")


_BASE64 = re.compile(r"[A-Za-z0-9+/]{2,240}")


def decode_payload(text: str) -> bytes:
    """Bytes of an unpadded base64 data field.

    Raises:
        DecodeError: characters outside the alphabet, an impossible length, or a
            non-canonical encoding (so each payload has exactly one text form).
    """
    if not _BASE64.fullmatch(text) or len(text) % 4 == 1:
        raise DecodeError(f"REYAX data field of {len(text)} chars is not unpadded base64")
    try:
        payload = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise DecodeError("REYAX data field is not base64") from exc
    if encode_payload(payload) != text:
        raise DecodeError("REYAX data field is not canonical base64")
    return payload


def encode_send(address: int, payload: bytes) -> bytes:
    """AT+SEND=<address>,<length>,<base64 of payload> CR LF."""
    _check("address", address, range(0x10000))
    text = encode_payload(payload)
    return _command(f"AT+SEND={address},{len(text)},{text}")


# Module -> host.


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAccepted:
    """+OK: the last command was done."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """+ERR=n: the last command failed."""

    code: int

    @property
    def meaning(self) -> str:
        """The guide's text for the code."""
        return ERROR_MEANINGS.get(self.code, f"unknown error {self.code}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleRestarted:
    """+READY: the module (re)started and lost its unsaved settings."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingReported:
    """+NAME=value (a query answer) or a bare +NAME notice such as +RESET."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketReceived:
    """+RCV: one packet heard, with its sender address and signal quality."""

    address: int
    payload: bytes
    rssi_dbm: int
    snr_db: int


RylrEvent = CommandAccepted | CommandRejected | ModuleRestarted | SettingReported | PacketReceived

_RCV = re.compile(r"\+RCV=(\d{1,5}),(\d{1,3}),(.*),(-?\d{1,4}),(-?\d{1,4})")
_ERR = re.compile(r"\+ERR=(\d{1,3})")
_SETTING = re.compile(r"\+([A-Z]{2,16})(?:=([ -~]*))?")


class RylrParser:
    """Streaming line parser for a REYAX module; counts what it cannot use, never raises."""

    def __init__(self) -> None:
        self.unknown_lines = 0  # not a line this module knows
        self.overlong_lines = 0  # longer than _MAX_LINE_BYTES, dropped unread
        self.malformed_packets = 0  # +RCV with bad fields or a length that does not match
        self.undecodable_payloads = 0  # +RCV whose data is not meshnode's base64
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line, waiting for its LF

    def feed(self, chunk: bytes) -> list[RylrEvent]:
        """Add bytes from the module; return the events of every line now complete."""
        events: list[RylrEvent] = []
        pos = 0
        while pos < len(chunk):
            newline = chunk.find(b"\n", pos)
            end = len(chunk) if newline < 0 else newline
            if not self._skipping:
                self._buf += chunk[pos:end]
                if len(self._buf) > _MAX_LINE_BYTES:
                    self.overlong_lines += 1
                    self._buf.clear()
                    self._skipping = True
            if newline < 0:
                break
            if not self._skipping:
                event = self._line(bytes(self._buf))
                if event is not None:
                    events.append(event)
            self._buf.clear()
            self._skipping = False
            pos = newline + 1
        return events

    def _line(self, raw: bytes) -> RylrEvent | None:
        """The event of one line without its LF; None (and a count) if there is none."""
        raw = raw.rstrip(b"\r")
        if not raw:
            return None
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            self.unknown_lines += 1
            return None
        if line.startswith("+RCV="):
            return self._packet(line)
        if line == "+OK":
            return CommandAccepted()
        if line == "+READY":
            return ModuleRestarted()
        if match := _ERR.fullmatch(line):
            return CommandRejected(code=int(match[1]))
        if (match := _SETTING.fullmatch(line)) and match[1] not in ("RCV", "ERR"):
            return SettingReported(name=match[1], value=match[2] or "")
        self.unknown_lines += 1
        return None

    def _packet(self, line: str) -> PacketReceived | None:
        """Decode a +RCV line."""
        match = _RCV.fullmatch(line)
        if match is None or len(match[3]) != int(match[2]) or int(match[1]) > 0xFFFF:
            self.malformed_packets += 1
            return None
        try:
            payload = decode_payload(match[3])
        except DecodeError:
            self.undecodable_payloads += 1
            return None
        return PacketReceived(
            address=int(match[1]),
            payload=payload,
            rssi_dbm=int(match[4]),
            snr_db=int(match[5]),
        )

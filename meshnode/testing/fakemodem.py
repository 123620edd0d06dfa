"""Fake LoRa modems for the channel emulator: each speaks one driver's device protocol.

A modem takes the bytes its host writes (``feed``) and returns replies for the host and
``Send`` requests for the air; ``receive`` turns a packet heard on the air into the bytes
the host reads.

* ``KissModem`` (RNode): KISS command frames. DETECT, FW_VERSION, PLATFORM and MCU are
  answered, settings are echoed, RADIO_STATE switches the radio (off until the host turns it
  on: DATA while off gets ERROR 0x02). Each DATA frame is one packet, L = payload + 1
  (RNode's header). A received packet reaches the host as STAT_RSSI, STAT_SNR, DATA.
* ``E22Modem`` (transparent mode): the host stream is re-framed on KISS FENDs (reads may
  split or join the driver's writes) and each frame is one packet of its raw bytes, cut into
  240-byte sub-packets when longer. Received packets reach the host as raw bytes.
* ``RylrModem`` (REYAX): CR LF lines; ``+OK`` to every AT command (queries of ADDRESS and
  NETWORKID get their values), ``AT+SEND=addr,len,text`` is one packet of the text plus the
  module's 8-byte header; received packets reach the host as
  ``+RCV=<sender>,<len>,<text>,-50,10``. An AT+SEND while the last one is on the air gets
  ``+ERR=17`` and is dropped, as the REYAX guide describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.radio import rnode, rylr
from meshnode.radio.kiss import FEND, KissDecoder

if TYPE_CHECKING:
    from meshnode.radio.airtime import LoRaParams

__all__ = [
    "DRIVERS",
    "REFUSED",
    "E22Modem",
    "KissModem",
    "Modem",
    "RylrModem",
    "Send",
    "make_modem",
]

DRIVERS = ("kiss", "e22", "rylr")
_SUB_PACKET_BYTES = 240  # E22 default sub-packet
_MAX_IN_BYTES = 4096  # a modem's input buffer without a complete frame or line
_RSSI_DBM, _SNR_DB = -50, 10
_RYLR_ERR_BUSY = b"+ERR=17\r\n"
_RYLR_SEND = re.compile(r"AT\+SEND=(\d{1,5}),(\d{1,3}),(.*)")
_RYLR_SET = re.compile(r"AT\+([A-Z]+)=(.*)")
_RYLR_ASK = re.compile(r"AT\+([A-Z]+)\?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A modem's request to transmit; ``busy_reply`` set: refuse it while on the air."""

    data: bytes  # what the receiving modems turn into host bytes
    air_bytes: int
    reply: bytes = b""
    busy_reply: bytes | None = None


REFUSED = Send(data=b"", air_bytes=0)  # a send the modem refused by itself: counted only


# Modems: host bytes in, replies and packets out; received packets out as host bytes.


class KissModem:
    """An RNode: KISS command frames, one DATA frame per packet."""

    carrier_sense = True

    def __init__(self) -> None:
        self._decoder = KissDecoder(max_frame_bytes=1024)
        self.radio_on = False

    def feed(self, data: bytes) -> list[bytes | Send]:
        out: list[bytes | Send] = []
        for frame in self._decoder.feed(data):
            command, arg = frame.type_byte, frame.data
            if command == rnode.RNodeCommand.DATA:
                if not self.radio_on or not 1 <= len(arg) <= rnode.MTU_BYTES:
                    out.append(rnode.encode_command(rnode.RNodeCommand.ERROR, b"\x02"))
                    out.append(REFUSED)
                else:
                    out.append(Send(data=arg, air_bytes=len(arg) + rnode.AIR_HEADER_BYTES))
            else:
                out.extend(self._command(command, arg))
        return out

    def preamble_symbols(self, params: LoRaParams) -> int:
        """RNode stretches its preamble to at least 18 symbols and 24 ms."""
        return rnode.preamble_symbols(params.spreading_factor, params.bandwidth_hz)

    def _command(self, command: int, arg: bytes) -> list[bytes | Send]:
        cmd = rnode.RNodeCommand
        answers = {
            cmd.DETECT: bytes((rnode.DETECT_RESPONSE,)),
            cmd.FW_VERSION: b"\x01\x4a",
            cmd.PLATFORM: b"\x80",
            cmd.MCU: b"\x81",
        }
        if command in answers:
            return [rnode.encode_command(command, answers[cmd(command)])]
        if command == cmd.RADIO_STATE and arg in (b"\x00", b"\x01"):
            self.radio_on = arg == b"\x01"
        if command == cmd.RADIO_STATE:
            return [rnode.encode_command(command, b"\x01" if self.radio_on else b"\x00")]
        echoed = (cmd.FREQUENCY, cmd.BANDWIDTH, cmd.TX_POWER, cmd.SF, cmd.CR)
        if command in (*echoed, cmd.ST_ALOCK, cmd.LT_ALOCK):
            return [rnode.encode_command(command, arg)]
        return []

    def receive(self, data: bytes) -> bytes:
        rssi = bytes((_RSSI_DBM + rnode.RSSI_OFFSET_DB,))
        snr = (_SNR_DB * 4).to_bytes(1, "big", signed=True)
        return (
            rnode.encode_command(rnode.RNodeCommand.STAT_RSSI, rssi)
            + rnode.encode_command(rnode.RNodeCommand.STAT_SNR, snr)
            + rnode.encode_data(data)
        )


class E22Modem:
    """An E22 in transparent mode, carrying meshnode's KISS-framed stream."""

    carrier_sense = True  # LBT, which meshnode switches on
    radio_on = True

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | Send]:
        self._buf += data
        out: list[bytes | Send] = []
        while True:
            start = self._buf.find(FEND)
            if start < 0:
                self._buf.clear()  # nothing framed: the driver never writes that
                break
            end = self._buf.find(FEND, start + 1)
            if end < 0:
                del self._buf[:start]
                if len(self._buf) > _MAX_IN_BYTES:
                    self._buf.clear()
                break
            if end == start + 1:  # FEND FEND: the second one opens the frame
                del self._buf[: start + 1]
                continue
            frame = bytes(self._buf[start : end + 1])
            del self._buf[: end + 1]
            for i in range(0, len(frame), _SUB_PACKET_BYTES):
                chunk = frame[i : i + _SUB_PACKET_BYTES]
                out.append(Send(data=chunk, air_bytes=len(chunk)))
        return out

    def preamble_symbols(self, params: LoRaParams) -> int:
        """Not settable on an E22; the emulator's own."""
        return params.preamble_symbols

    def receive(self, data: bytes) -> bytes:
        return data


class RylrModem:
    """A REYAX RYLR998/896: AT command lines, base64 text payloads."""

    carrier_sense = False
    radio_on = True

    def __init__(self) -> None:
        self._buf = bytearray()
        self.settings = {"ADDRESS": "0", "NETWORKID": "18"}

    def feed(self, data: bytes) -> list[bytes | Send]:
        self._buf += data
        out: list[bytes | Send] = []
        while (newline := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:newline]).rstrip(b"\r").decode("ascii", "replace")
            del self._buf[: newline + 1]
            if line:
                out.append(self._line(line))
        if len(self._buf) > _MAX_IN_BYTES:
            self._buf.clear()
        return out

    def _line(self, line: str) -> bytes | Send:
        if not line.startswith("AT"):
            return b"+ERR=2\r\n"
        if send := _RYLR_SEND.fullmatch(line):
            text = send[3]
            if len(text) != int(send[2]):
                return b"+ERR=5\r\n"
            if len(text) > rylr.MAX_DATA_CHARS:
                return b"+ERR=13\r\n"
            air = len(text) + rylr.AIR_HEADER_BYTES
            return Send(
                data=text.encode(), air_bytes=air, reply=b"+OK\r\n", busy_reply=_RYLR_ERR_BUSY
            )
        if ask := _RYLR_ASK.fullmatch(line):
            value = self.settings.get(ask[1])
            return b"+OK\r\n" if value is None else f"+{ask[1]}={value}\r\n".encode()
        if setting := _RYLR_SET.fullmatch(line):
            self.settings[setting[1]] = setting[2]
        return b"+OK\r\n"

    def preamble_symbols(self, params: LoRaParams) -> int:
        """The preamble AT+PARAMETER set (its 4th field), else the RYLR998's 12."""
        fields = self.settings.get("PARAMETER", "").split(",")
        return int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else 12

    def receive(self, data: bytes, *, sender_address: str = "0") -> bytes:
        text = data.decode("ascii", "replace")
        return f"+RCV={sender_address},{len(text)},{text},{_RSSI_DBM},{_SNR_DB}\r\n".encode()


Modem = KissModem | E22Modem | RylrModem


def make_modem(driver: str) -> Modem:
    if driver == "kiss":
        return KissModem()
    if driver == "e22":
        return E22Modem()
    return RylrModem()

"""Driver adapters: link packets to the bytes a device wants, and back (pure).

Every driver moves *link packets* (radio/fragment.py: a message or a fragment of
one, with its CRC-16) of at most ``packet_mtu`` bytes:

* ``serial``: a plain cable; each packet is a KISS data frame (radio/kiss.py).
* ``kiss``: an RNode (or KISS TNC); RNode command frames set the radio up (radio/rnode.py)
  and each packet is one DATA frame, one LoRa frame on the air.
* ``rylr``: a REYAX RYLR896/RYLR998: AT commands set it up (radio/rylr.py) and each packet
  goes as base64 text in one ``AT+SEND`` (180 bytes of packet in 240 characters).
* ``e22``: an Ebyte E22/E32 or the Waveshare SX1262 HAT in transparent mode, set up with
  its pins and registers beforehand (firmware-notes/e22.md); each packet is KISS-framed
  and written in pieces of at most one sub-packet (240 bytes), so the byte stream stays
  self-delimiting however the module cuts or joins it on the air.
"""

from __future__ import annotations

from typing import Protocol

from meshnode.errors import LinkError
from meshnode.radio import e22, rnode, rylr
from meshnode.radio.kiss import KissDecoder, encode_kiss

__all__ = ["Driver", "RadioSettings", "make_driver"]

_CABLE_MTU_BYTES = 1024


class RadioSettings(Protocol):
    """What a driver needs of one [[radio]] table (the config's RadioSection has it)."""

    @property
    def driver(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def frequency_hz(self) -> int: ...
    @property
    def bandwidth_hz(self) -> int: ...
    @property
    def spreading_factor(self) -> int: ...
    @property
    def coding_rate(self) -> int: ...
    @property
    def tx_power_dbm(self) -> int: ...


class Driver(Protocol):
    """What the radio interface needs of a device."""

    packet_mtu: int
    preamble_symbols: int  # the preamble the device sends before each LoRa packet
    answers_commands: bool  # AT modules answer every line: the next write waits for it
    setup_gap_s: float  # pause after each setup write to a device that does not answer
    open_settle_s: float  # pause after opening the port: boards that reset on open boot

    def setup(self) -> list[bytes]:
        """Bytes to write after opening the port, in order."""
        ...

    def setup_after(self) -> list[bytes]:
        """More setup, chosen from what the device answered to ``setup``."""
        ...

    def encode(self, packet: bytes) -> list[bytes]:
        """The writes that send one link packet."""
        ...

    def air_sizes(self, packet: bytes) -> list[int]:
        """PHY payload bytes of each LoRa packet that carries ``packet`` on the air."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """Link packets in bytes read from the device."""
        ...

    def take_answers(self) -> list[bool]:
        """Command answers read since the last call: True accepted, False refused."""
        ...

    def problems(self) -> list[str]:
        """Settings the device did not confirm after setup (empty: all is well)."""
        ...

    def status(self) -> dict[str, object]:
        """Device facts for status (signal, errors)."""
        ...


class _Quiet:
    """Defaults for a device that never answers commands."""

    preamble_symbols = 8
    answers_commands = False
    setup_gap_s = 0.0
    open_settle_s = 0.0

    def setup_after(self) -> list[bytes]:
        return []

    def take_answers(self) -> list[bool]:
        return []

    def problems(self) -> list[str]:
        return []


class _KissStream(_Quiet):
    """Packets as KISS data frames on a byte stream (cable, E22)."""

    def __init__(self, packet_mtu: int, write_bytes: int | None) -> None:
        self.packet_mtu = packet_mtu
        self._write_bytes = write_bytes
        self._decoder = KissDecoder(max_frame_bytes=packet_mtu)

    def setup(self) -> list[bytes]:
        return []

    def encode(self, packet: bytes) -> list[bytes]:
        framed = encode_kiss(packet)
        if self._write_bytes is None:
            return [framed]
        return e22.split_writes(framed, self._write_bytes)

    def air_sizes(self, packet: bytes) -> list[int]:
        # Each write is at most one sub-packet; the module may join two, never less air.
        return [len(write) for write in self.encode(packet)]

    def feed(self, data: bytes) -> list[bytes]:
        return [f.data for f in self._decoder.feed(data) if f.command == 0 and f.data]

    def status(self) -> dict[str, object]:
        return {"line_noise_bytes": self._decoder.skipped_bytes}


class _RNode(_Quiet):
    """An RNode: set up by command frames, one DATA frame per LoRa packet."""

    packet_mtu = rnode.MTU_BYTES
    setup_gap_s = 0.05
    open_settle_s = 2.0  # ESP32 boards (T3S3, T-Beam) reset when the port opens

    def __init__(self, params: rnode.RNodeParams) -> None:
        self._params = params
        self.preamble_symbols = rnode.preamble_symbols(params.spreading_factor, params.bandwidth_hz)
        self._parser = rnode.RNodeParser()
        self._reported: dict[rnode.RNodeCommand, int] = {}
        self._rssi: int | None = None
        self._snr: float | None = None
        self._errors = 0

    def setup(self) -> list[bytes]:
        self._reported.clear()
        return [*rnode.detect_commands(), *rnode.configure_commands(self._params)]

    def encode(self, packet: bytes) -> list[bytes]:
        return [rnode.encode_data(packet)]

    def air_sizes(self, packet: bytes) -> list[int]:
        return [len(packet) + rnode.AIR_HEADER_BYTES]

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for event in self._parser.feed(data):
            if isinstance(event, rnode.PacketReceived):
                packets.append(event.data)
                self._rssi, self._snr = event.rssi_dbm, event.snr_db
            elif isinstance(event, rnode.SettingReported):
                self._reported[event.command] = event.value
            elif isinstance(event, rnode.ErrorReported):
                self._errors += 1
        return packets

    def problems(self) -> list[str]:
        bad = rnode.mismatched_settings(self._params, self._reported)
        return [f"{c.name.lower()} not confirmed" for c in bad]

    def status(self) -> dict[str, object]:
        return {"rssi_dbm": self._rssi, "snr_db": self._snr, "device_errors": self._errors}


class _Rylr:
    """A REYAX module: AT commands answered +OK or +ERR, payloads in base64 text."""

    packet_mtu = rylr.MTU_BYTES
    answers_commands = True
    setup_gap_s = 0.0
    open_settle_s = 0.0

    def __init__(self, params: rylr.RylrParams) -> None:
        self._params = params
        self.preamble_symbols = params.preamble
        self._parser = rylr.RylrParser()
        self._answers: list[bool] = []
        self._refused: list[str] = []
        self._reported: dict[str, str] = {}
        self._rssi: int | None = None
        self._snr: int | None = None
        self._rejected = 0

    def setup(self) -> list[bytes]:
        self._refused.clear()
        self._reported.clear()
        return list(rylr.FLASH_QUERIES)  # address and network id are written only if they differ

    def setup_after(self) -> list[bytes]:
        return list(rylr.configure_commands(self._params, self._reported))

    def encode(self, packet: bytes) -> list[bytes]:
        return [rylr.encode_send(rylr.BROADCAST_ADDRESS, packet)]

    def air_sizes(self, packet: bytes) -> list[int]:
        return [len(rylr.encode_payload(packet)) + rylr.AIR_HEADER_BYTES]

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for event in self._parser.feed(data):
            if isinstance(event, rylr.PacketReceived):
                packets.append(event.payload)
                self._rssi, self._snr = event.rssi_dbm, event.snr_db
            elif isinstance(event, rylr.CommandAccepted):
                self._answers.append(True)
            elif isinstance(event, rylr.SettingReported):
                self._reported[event.name] = event.value
                self._answers.append(True)
            elif isinstance(event, rylr.ModuleRestarted):
                raise LinkError("the module restarted (+READY) and lost its settings")
            elif isinstance(event, rylr.CommandRejected):
                self._rejected += 1
                self._answers.append(False)
                self._refused.append(event.meaning)
        return packets

    def take_answers(self) -> list[bool]:
        answers, self._answers = self._answers, []
        return answers

    def problems(self) -> list[str]:
        return list(self._refused)

    def status(self) -> dict[str, object]:
        return {"rssi_dbm": self._rssi, "snr_db": self._snr, "commands_rejected": self._rejected}


def make_driver(radio: RadioSettings) -> Driver:
    """The driver for one [[radio]] table."""
    if radio.driver == "serial":
        return _KissStream(_CABLE_MTU_BYTES, None)
    if radio.driver == "e22":
        return _KissStream(e22.MTU_BYTES, 240)
    if radio.driver == "kiss":
        return _RNode(
            rnode.RNodeParams(
                frequency_hz=radio.frequency_hz,
                bandwidth_hz=radio.bandwidth_hz,
                spreading_factor=radio.spreading_factor,
                coding_rate=radio.coding_rate,
                tx_power_dbm=max(radio.tx_power_dbm, 0),
            )
        )
    model = rylr.RylrModel(radio.model or "rylr998")
    return _Rylr(
        rylr.meshnode_params(
            model,
            frequency_hz=radio.frequency_hz,
            bandwidth_hz=radio.bandwidth_hz,
            spreading_factor=radio.spreading_factor,
            coding_rate=radio.coding_rate,
            tx_power_dbm=max(radio.tx_power_dbm, 0),
        )
    )

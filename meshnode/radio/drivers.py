"""Driver adapters: link packets to the bytes a device wants, and back (pure).

Every driver moves *link packets* (transports/fragment.py: a message or a fragment of
one, with its CRC-16) of at most ``packet_mtu`` bytes:

* ``serial``: a plain cable; each packet is a KISS data frame (transports/kiss.py).
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

from typing import TYPE_CHECKING, Protocol

from meshnode.radio import e22, rnode, rylr
from meshnode.transports.kiss import KissDecoder, encode_kiss

if TYPE_CHECKING:
    from meshnode.config import RadioSection

__all__ = ["Driver", "make_driver"]

_CABLE_MTU_BYTES = 1024


class Driver(Protocol):
    """What the radio interface needs of a device."""

    packet_mtu: int
    setup_gap_s: float  # pause between setup writes (AT modules answer each one)

    def setup(self) -> list[bytes]:
        """Bytes to write after opening the port, in order."""
        ...

    def encode(self, packet: bytes) -> list[bytes]:
        """The writes that send one link packet."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """Link packets in bytes read from the device."""
        ...

    def status(self) -> dict[str, object]:
        """Device facts for status (signal, errors)."""
        ...


class _KissStream:
    """Packets as KISS data frames on a byte stream (cable, E22)."""

    setup_gap_s = 0.0

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

    def feed(self, data: bytes) -> list[bytes]:
        return [f.data for f in self._decoder.feed(data) if f.command == 0 and f.data]

    def status(self) -> dict[str, object]:
        return {"line_noise_bytes": self._decoder.skipped_bytes}


class _RNode:
    """An RNode: set up by command frames, one DATA frame per LoRa packet."""

    packet_mtu = rnode.MTU_BYTES
    setup_gap_s = 0.05

    def __init__(self, params: rnode.RNodeParams) -> None:
        self._params = params
        self._parser = rnode.RNodeParser()
        self._rssi: int | None = None
        self._snr: float | None = None
        self._errors = 0

    def setup(self) -> list[bytes]:
        return [*rnode.detect_commands(), *rnode.configure_commands(self._params)]

    def encode(self, packet: bytes) -> list[bytes]:
        return [rnode.encode_data(packet)]

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for event in self._parser.feed(data):
            if isinstance(event, rnode.PacketReceived):
                packets.append(event.data)
                self._rssi, self._snr = event.rssi_dbm, event.snr_db
            elif isinstance(event, rnode.ErrorReported):
                self._errors += 1
        return packets

    def status(self) -> dict[str, object]:
        return {"rssi_dbm": self._rssi, "snr_db": self._snr, "device_errors": self._errors}


class _Rylr:
    """A REYAX module: AT commands, payloads in base64 text."""

    packet_mtu = rylr.MTU_BYTES
    setup_gap_s = 0.3

    def __init__(self, params: rylr.RylrParams) -> None:
        self._params = params
        self._parser = rylr.RylrParser()
        self._rssi: int | None = None
        self._snr: int | None = None
        self._rejected = 0

    def setup(self) -> list[bytes]:
        return list(rylr.configure_commands(self._params))

    def encode(self, packet: bytes) -> list[bytes]:
        return [rylr.encode_send(rylr.BROADCAST_ADDRESS, packet)]

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for event in self._parser.feed(data):
            if isinstance(event, rylr.PacketReceived):
                packets.append(event.payload)
                self._rssi, self._snr = event.rssi_dbm, event.snr_db
            elif isinstance(event, rylr.CommandRejected):
                self._rejected += 1
        return packets

    def status(self) -> dict[str, object]:
        return {"rssi_dbm": self._rssi, "snr_db": self._snr, "commands_rejected": self._rejected}


def make_driver(radio: RadioSection) -> Driver:
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

"""The TOML config file: parsing, validation and defaults.

Every key is optional; a missing file means all defaults. An unknown key or a bad value
raises ConfigError naming the full dotted key, so a typo never passes silently. Sizes take
an integer number of bytes or a string such as "64MiB", "500MB" or "1GiB". The program
never writes the file; EXAMPLE_CONFIG is the documented template.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from meshnode.codec.message import DEFAULT_MAX_CONTENT_BYTES
from meshnode.core.node import NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.errors import ConfigError, DecodeError
from meshnode.host.address import DEFAULT_PORT, parse_host_port, parse_peer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from meshnode.radio.airtime import LoRaParams
    from meshnode.store.flatfile import StoreConfig

__all__ = [
    "EXAMPLE_CONFIG",
    "MAX_HOPS_LIMIT",
    "Config",
    "FsyncPolicy",
    "LanSection",
    "NodeSection",
    "PolicySection",
    "RadioSection",
    "StoreSection",
    "load_config",
    "lora_params",
    "node_config",
    "parse_config",
    "parse_size",
    "store_config",
]

FsyncPolicy = Literal["always", "batch", "never"]

MAX_HOPS_LIMIT = 6
_MAX_CONTENT_LIMIT = 65536
# A segment must hold a few entries of the largest size, and segment offsets have 40 bits.
_MIN_SEGMENT_BYTES = 64 << 10
_MAX_SEGMENT_BYTES = (1 << 40) - 1

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSection:
    """[node]: where the data lives and how big one entry's content may be."""

    data_dir: str = ""
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    control_socket: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSection:
    """[store]: durability and file layout of the flat-file store."""

    fsync: FsyncPolicy = "batch"
    fsync_batch_entries: int = 1000
    segment_bytes: int = 64 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySection:
    """[policy]: which feeds are stored and how much of each."""

    max_hops: int = 2
    full_hops: int = 1
    partial_entries: int = 100
    feed_cap_bytes: int = 0
    global_cap_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UsbSection:
    """[usb]: which drives the plug-in sync makes meshnode drives, and how much they take."""

    label: str = ""
    cap_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True, kw_only=True)
class LanSection:
    """[lan]: TCP links, mDNS discovery and static peers."""

    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    mdns: bool = True
    peers: tuple[str, ...] = ()
    handshake_timeout_s: float = 15.0
    idle_timeout_s: float = 90.0
    max_connections: int = 64
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0


RadioDriver = Literal["serial", "kiss", "e22", "rylr"]
_DRIVERS: tuple[str, ...] = ("serial", "kiss", "e22", "rylr")
# A sensible channel per region when the config names none (radio.md 5: 869.525 MHz in EU).
_REGION_FREQUENCY_HZ = {"EU868": 868_300_000, "EU868_869_5": 869_525_000, "US915": 904_600_000}


@dataclass(frozen=True, slots=True, kw_only=True)
class RadioSection:
    """One [[radio]] table: a serial cable or a LoRa radio, and its channel settings."""

    name: str
    driver: RadioDriver
    port: str
    baud: int = 115200
    region: str = ""
    frequency_hz: int = 0
    bandwidth_hz: int = 125_000
    spreading_factor: int = 9
    coding_rate: int = 5
    tx_power_dbm: int = 14
    control_share: float = 0.10
    model: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole config file; ``source`` is its path, or "defaults"."""

    node: NodeSection = field(default_factory=NodeSection)
    store: StoreSection = field(default_factory=StoreSection)
    policy: PolicySection = field(default_factory=PolicySection)
    lan: LanSection = field(default_factory=LanSection)
    usb: UsbSection = field(default_factory=UsbSection)
    radios: tuple[RadioSection, ...] = ()
    source: str = "defaults"


EXAMPLE_CONFIG = """\
# meshnode configuration (TOML). Every key is optional; the values shown are the defaults.
# Location: --config FILE, else $MESHNODE_CONFIG, else under systemd
# $CONFIGURATION_DIRECTORY/meshnode.toml (normally /etc/meshnode/meshnode.toml),
# else $XDG_CONFIG_HOME/meshnode/meshnode.toml (~/.config/meshnode/meshnode.toml) when it
# exists, else /etc/meshnode/meshnode.toml when that exists (a box's operator then sees
# the service's node).
# Sizes are a number of bytes or a string such as "64MiB", "500MB" or "1GiB".
# `meshnode config --example` prints this file; `meshnode config` shows what is in force.

[node]
# Data directory (identity, network key, store). Empty: --data DIR, else $MESHNODE_DATA,
# else $STATE_DIRECTORY under systemd, else $XDG_DATA_HOME/meshnode
# (~/.local/share/meshnode). A relative path is taken from this file's directory.
data_dir = ""
# Largest content of one entry, in bytes (1..65536). Entries from others above it are refused.
max_content_bytes = 8192
# Unix socket of the running daemon, which `meshnode status`, `post` and the rest use. Empty:
# $RUNTIME_DIRECTORY/control.sock under systemd (/run/meshnode), else DATA_DIR/control.sock.
control_socket = ""

[store]
# When appends reach the disk: "always" (fsync every entry; safest, slowest on SD cards),
# "batch" (fsync every fsync_batch_entries entries; a power cut loses at most that many),
# or "never" (leave it to the OS). A killed process loses nothing in any mode.
fsync = "batch"
fsync_batch_entries = 1000
# Size at which the log starts a new segment file (64KiB .. 1TiB).
segment_bytes = "64MiB"

[policy]
# Feeds further than this many follow hops from us are not stored (0..6).
max_hops = 2
# Feeds this close (ours is 0, the ones we follow 1) are kept whole.
full_hops = 1
# Feeds between full_hops and max_hops keep only their latest N entries (N >= 1).
partial_entries = 100
# Byte cap per feed, for feeds at hop 1 or further; 0 means no cap.
feed_cap_bytes = 0
# Byte cap for the whole store; the least wanted feeds are cut first. 0 means no cap.
global_cap_bytes = 0

[lan]
# Address and port to listen on for peers over TCP ("[::]:7420" for IPv6 as well).
# `meshnode run --listen HOST:PORT` overrides it.
listen = "0.0.0.0:7420"
# Announce this node and find others of the same network by mDNS (_meshnode._tcp).
# `meshnode run --no-mdns` switches it off.
mdns = true
# Peers to dial always, for networks where multicast is blocked: "HOST:PORT", or
# "HOST:PORT@ID" to pin the peer's key (without it the key is learned on first contact).
# `meshnode run --peer HOST:PORT` adds one.
peers = []
# Seconds a new connection has to finish the secret handshake (slow Wi-Fi needs some).
handshake_timeout_s = 15.0
# A link that receives nothing for this long is closed; keepalives go every third of it.
idle_timeout_s = 90.0
# Most TCP connections at once, in and out; more are refused and logged.
max_connections = 64
# Redial a lost or unreachable peer after a delay that doubles from min to max (jittered).
reconnect_min_s = 1.0
reconnect_max_s = 300.0

[usb]
# Plugging in a USB drive syncs it when it has a meshnode/ folder (`meshnode usb init`).
# A drive whose filesystem label is this one gets the folder on first plug-in. Empty: none.
label = ""
# Most space a new drive's folder takes (`meshnode usb init --cap` overrides it).
cap_bytes = "1GiB"

# Serial cables and LoRa radios: one [[radio]] table each (none by default). Drivers:
# "serial" (a plain cable between two boxes), "kiss" (KISS TNCs and RNode), "e22" (Ebyte
# E22/E32, Waveshare SX1262 HAT, transparent mode), "rylr" (REYAX RYLR896/998). See
# firmware-notes/ for each radio's settings. Regions: "EU868" (868.0-868.6 MHz, 1% per
# hour), "EU868_869_5" (869.4-869.65 MHz, 10% per hour), "US915" (under 400 ms per frame).
# [[radio]]
# name = "lora"
# driver = "kiss"
# port = "/dev/serial/by-id/usb-..."   # or /dev/serial0, or a pyserial URL
# baud = 115200
# region = "EU868_869_5"
# frequency_hz = 869525000
# bandwidth_hz = 125000
# spreading_factor = 9
# coding_rate = 5                     # 5..8 for 4/5..4/8
# tx_power_dbm = 14
# control_share = 0.10                # beacons and wants stay under this share of airtime
"""


def parse_size(value: object, key: str) -> int:
    """Bytes from an int or a string like "64MiB"; ConfigError naming ``key`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(key, f"must be a size >= 0, got {value!r}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match and match.group(2).lower() in _UNITS:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
    raise ConfigError(key, f'must be a size in bytes or a string like "64MiB", got {value!r}')


class _Table:
    """One section's keys, read once each with a type and a range."""

    def __init__(self, section: str, data: object, known: list[str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(section, f"must be a table ([{section}]), got {data!r}")
        for key in data:
            if key not in known:
                raise ConfigError(f"{section}.{key}", f"unknown key (known: {', '.join(known)})")
        self.section = section
        self.data = cast("dict[str, object]", data)

    def _key(self, name: str) -> str:
        return f"{self.section}.{name}"

    def integer(self, name: str, default: int, lo: int, hi: int | None = None) -> int:
        """An integer in lo..hi."""
        value = self.data.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ConfigError(self._key(name), f"must be an integer >= {lo}, got {value!r}")
        if hi is not None and value > hi:
            raise ConfigError(self._key(name), f"must be an integer <= {hi}, got {value!r}")
        return value

    def size(self, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
        """A size in bytes in lo..hi."""
        value = parse_size(self.data.get(name, default), self._key(name))
        if value < lo or (hi is not None and value > hi):
            limit = f"between {lo} and {hi} bytes" if hi is not None else f">= {lo} bytes"
            raise ConfigError(self._key(name), f"must be {limit}, got {value}")
        return value

    def string(self, name: str, default: str) -> str:
        """A string."""
        value = self.data.get(name, default)
        if not isinstance(value, str):
            raise ConfigError(self._key(name), f"must be a string, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false."""
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self._key(name), f"must be true or false, got {value!r}")
        return value

    def seconds(self, name: str, default: float, lo: float, hi: float) -> float:
        """A number of seconds in lo..hi."""
        value = self.data.get(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(self._key(name), f"must be seconds in {lo}..{hi}, got {value!r}")
        return float(value)

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A list of strings."""
        value = self.data.get(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self._key(name), f"must be a list of strings, got {value!r}")
        return tuple(value)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        """One of ``options``."""
        value = self.data.get(name, default)
        if value not in options:
            raise ConfigError(
                self._key(name), f"must be one of {', '.join(options)}, got {value!r}"
            )
        return value


def _names(
    cls: type[NodeSection | StoreSection | PolicySection | LanSection | UsbSection],
) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _parse_node(data: object) -> NodeSection:
    t, d = _Table("node", data, _names(NodeSection)), NodeSection()
    return NodeSection(
        data_dir=t.string("data_dir", d.data_dir),
        max_content_bytes=t.integer(
            "max_content_bytes", d.max_content_bytes, 1, _MAX_CONTENT_LIMIT
        ),
        control_socket=t.string("control_socket", d.control_socket),
    )


def _parse_store(data: object) -> StoreSection:
    t, d = _Table("store", data, _names(StoreSection)), StoreSection()
    return StoreSection(
        fsync=cast("FsyncPolicy", t.choice("fsync", d.fsync, ("always", "batch", "never"))),
        fsync_batch_entries=t.integer("fsync_batch_entries", d.fsync_batch_entries, 1),
        segment_bytes=t.size(
            "segment_bytes", d.segment_bytes, _MIN_SEGMENT_BYTES, _MAX_SEGMENT_BYTES
        ),
    )


def _parse_policy(data: object) -> PolicySection:
    t, d = _Table("policy", data, _names(PolicySection)), PolicySection()
    max_hops = t.integer("max_hops", d.max_hops, 0, MAX_HOPS_LIMIT)
    full_hops = t.integer("full_hops", d.full_hops, 0, MAX_HOPS_LIMIT)
    if full_hops > max_hops:
        raise ConfigError(
            "policy.full_hops", f"must be <= policy.max_hops ({max_hops}), got {full_hops}"
        )
    return PolicySection(
        max_hops=max_hops,
        full_hops=full_hops,
        partial_entries=t.integer("partial_entries", d.partial_entries, 1),
        feed_cap_bytes=t.size("feed_cap_bytes", d.feed_cap_bytes),
        global_cap_bytes=t.size("global_cap_bytes", d.global_cap_bytes),
    )


def _parse_usb(data: object) -> UsbSection:
    t, d = _Table("usb", data, _names(UsbSection)), UsbSection()
    label = t.string("label", d.label)
    if len(label) > 16 or not label.isprintable():
        why = "must be a filesystem label: at most 16 printable characters"
        raise ConfigError("usb.label", f"{why}, got {label!r}")
    return UsbSection(label=label, cap_bytes=t.size("cap_bytes", d.cap_bytes, lo=1 << 20))


def _parse_lan(data: object) -> LanSection:
    t, d = _Table("lan", data, _names(LanSection)), LanSection()
    listen = t.string("listen", d.listen)
    _check_address(listen, "lan.listen", lambda text: parse_host_port(text, any_port=True))
    peers = t.strings("peers", d.peers)
    for i, peer in enumerate(peers):
        _check_address(peer, f"lan.peers[{i}]", parse_peer)
    reconnect_min_s = t.seconds("reconnect_min_s", d.reconnect_min_s, 0.1, 3600)
    reconnect_max_s = t.seconds("reconnect_max_s", d.reconnect_max_s, 0.1, 86400)
    if reconnect_max_s < reconnect_min_s:
        raise ConfigError("lan.reconnect_max_s", "must be >= lan.reconnect_min_s")
    return LanSection(
        listen=listen,
        mdns=t.boolean("mdns", d.mdns),
        peers=peers,
        handshake_timeout_s=t.seconds("handshake_timeout_s", d.handshake_timeout_s, 0.1, 600),
        idle_timeout_s=t.seconds("idle_timeout_s", d.idle_timeout_s, 1, 86400),
        max_connections=t.integer("max_connections", d.max_connections, 1, 10_000),
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
    )


def _check_address(text: str, key: str, parse: Callable[[str], object]) -> None:
    try:
        parse(text)
    except DecodeError as exc:
        raise ConfigError(key, str(exc)) from None


def _parse_radios(data: object) -> tuple[RadioSection, ...]:
    if not isinstance(data, list):
        raise ConfigError("radio", "must be an array of tables ([[radio]])")
    radios = tuple(_parse_radio(i, table) for i, table in enumerate(data))
    names = [r.name for r in radios]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("radio", f"two radios are named {name!r}")
    return radios


def _parse_radio(i: int, data: object) -> RadioSection:
    fields = [f.name for f in dataclasses.fields(RadioSection)]
    t = _Table(f"radio[{i}]", data, fields)
    driver = cast("RadioDriver", t.choice("driver", "", _DRIVERS))
    port = t.string("port", "")
    if not port:
        raise ConfigError(f"radio[{i}].port", "is required: a device path or a pyserial URL")
    region = t.string("region", "")
    lora = driver != "serial"
    if lora and region not in _REGION_FREQUENCY_HZ:
        raise ConfigError(
            f"radio[{i}].region",
            f"must be one of {', '.join(_REGION_FREQUENCY_HZ)} for a LoRa radio, got {region!r}",
        )
    radio = RadioSection(
        name=t.string("name", f"radio{i}"),
        driver=driver,
        port=port,
        baud=t.integer("baud", 9600 if driver == "e22" else 115200, 1200, 4_000_000),
        region=region,
        frequency_hz=t.integer("frequency_hz", _default_frequency_hz(driver, region), 0),
        bandwidth_hz=t.integer("bandwidth_hz", 125_000, 7_800, 500_000),
        spreading_factor=t.integer("spreading_factor", 9, 5, 12),
        coding_rate=t.integer("coding_rate", 5, 5, 8),
        tx_power_dbm=t.integer("tx_power_dbm", 14, -9, 30),
        control_share=t.seconds("control_share", 0.10, 0.0, 1.0),
        model=t.choice("model", "rylr998", ("rylr896", "rylr998")) if driver == "rylr" else "",
    )
    if driver == "e22":
        _check_e22(f"radio[{i}]", radio)
    if lora:
        _check_lora(f"radio[{i}]", radio)
    if driver == "rylr":
        _check_rylr(f"radio[{i}]", radio)
    return radio


def _default_frequency_hz(driver: str, region: str) -> int:
    """The region's usual frequency; for an E22, the first whole channel inside the band."""
    if driver != "e22" or region not in _REGION_FREQUENCY_HZ:
        return _REGION_FREQUENCY_HZ.get(region, 0)
    from meshnode.radio.airtime import REGIONS
    from meshnode.radio.e22 import E22Band

    band = REGIONS[region]
    base, step = E22Band.MHZ_900.base_hz, 1_000_000
    first = base + max(0, -(-(int(band.low_hz) - base) // step)) * step
    return first if first <= band.high_hz else 0  # 0: none; _check_e22 says so


def _check_e22(key: str, radio: RadioSection) -> None:
    """An E22 tunes whole channels only (1-MHz steps from 850.125 or 410.125 MHz)."""
    from meshnode.radio.e22 import E22Band, channel_for_frequency

    if not radio.frequency_hz:
        raise ConfigError(
            f"{key}.region",
            f"an E22 has no channel inside {radio.region} (1-MHz steps from 850.125 MHz); "
            'use region "EU868" (868.125 MHz) or "US915"',
        )
    band = E22Band.MHZ_900 if radio.frequency_hz > 600_000_000 else E22Band.MHZ_400
    try:
        channel_for_frequency(radio.frequency_hz, band)
    except ValueError as exc:
        raise ConfigError(f"{key}.frequency_hz", str(exc)) from None


def _check_rylr(key: str, radio: RadioSection) -> None:
    """The REYAX model accepts these LoRa settings."""
    from meshnode.radio.rylr import RylrModel, meshnode_params

    try:
        meshnode_params(
            RylrModel(radio.model),
            frequency_hz=radio.frequency_hz,
            bandwidth_hz=radio.bandwidth_hz,
            spreading_factor=radio.spreading_factor,
            coding_rate=radio.coding_rate,
            tx_power_dbm=radio.tx_power_dbm,
        )
    except ValueError as exc:
        raise ConfigError(key, f"{radio.model}: {exc}") from None


def _check_lora(key: str, radio: RadioSection) -> None:
    """The LoRa settings make a valid channel inside the region's band and power limit."""
    from meshnode.radio.airtime import REGIONS, check_params

    try:
        check_params(REGIONS[radio.region], lora_params(radio))
    except ValueError as exc:
        field_name, _, reason = str(exc).partition(": ")
        raise ConfigError(f"{key}.{field_name}", reason or str(exc)) from None


def lora_params(radio: RadioSection) -> LoRaParams:
    """The LoRa PHY settings of a [[radio]] table."""
    from meshnode.radio.airtime import LoRaParams

    return LoRaParams(
        frequency_hz=radio.frequency_hz,
        bandwidth_hz=radio.bandwidth_hz,
        spreading_factor=radio.spreading_factor,
        coding_rate=radio.coding_rate,
        tx_power_dbm=radio.tx_power_dbm,
    )


_SECTIONS = {
    "node": _parse_node,
    "store": _parse_store,
    "policy": _parse_policy,
    "lan": _parse_lan,
    "usb": _parse_usb,
    "radio": _parse_radios,
}


def parse_config(text_or_dict: str | Mapping[str, object], source: str = "<string>") -> Config:
    """Parse TOML text (or an already-parsed table) into a validated Config."""
    if isinstance(text_or_dict, str):
        try:
            data: Mapping[str, object] = tomllib.loads(text_or_dict)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, f"not valid TOML: {exc}") from exc
    else:
        data = text_or_dict
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(key, f"unknown section (known: {', '.join(_SECTIONS)})")
    return Config(
        node=_parse_node(data.get("node", {})),
        store=_parse_store(data.get("store", {})),
        policy=_parse_policy(data.get("policy", {})),
        lan=_parse_lan(data.get("lan", {})),
        usb=_parse_usb(data.get("usb", {})),
        radios=_parse_radios(data.get("radio", [])),
        source=source,
    )


def load_config(path: Path) -> Config:
    """Read and parse the config file at ``path``; ConfigError if unreadable or invalid."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "config file is not UTF-8") from exc
    return parse_config(text, str(path))


# -- adapters onto the core's and the store's own config types -----------------------------


def node_config(config: Config) -> NodeConfig:
    """The core's NodeConfig (with its PolicyConfig) for ``config``."""
    p = config.policy
    policy = PolicyConfig(
        max_hops=p.max_hops,
        full_hops=p.full_hops,
        partial_entries=p.partial_entries,
        feed_cap_bytes=p.feed_cap_bytes,
        global_cap_bytes=p.global_cap_bytes,
    )
    return NodeConfig(max_content_bytes=config.node.max_content_bytes, policy=policy)


def store_config(config: Config) -> StoreConfig:
    """FileStore's StoreConfig for ``config``."""
    # Imported here so that parsing a config never loads the disk-facing store module.
    from meshnode.store.flatfile import StoreConfig

    s = config.store
    return StoreConfig(
        fsync=s.fsync, fsync_batch_entries=s.fsync_batch_entries, segment_bytes=s.segment_bytes
    )

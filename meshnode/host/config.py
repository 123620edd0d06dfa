"""The TOML config file: parsing, validation and defaults.

Every key is optional; a missing file means all defaults. An unknown key or a bad value
raises ConfigError naming the full dotted key, so a typo never passes silently. Sizes take
an integer number of bytes or a string such as "64MiB", "500MB" or "1GiB". The program
never writes the file; EXAMPLE_CONFIG (config_example.py) is the documented template. The
[[radio]] table's type and device checks are in radio_section.py; this module re-exports
them with the rest of the config's names.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from meshnode.codec.message import DEFAULT_MAX_CONTENT_BYTES
from meshnode.core.mailbox import MailboxConfig
from meshnode.core.node import NodeConfig
from meshnode.core.policy import PolicyConfig
from meshnode.core.replication import ReplicationConfig
from meshnode.errors import ConfigError, DecodeError
from meshnode.host.address import DEFAULT_PORT, parse_host_port, parse_peer
from meshnode.host.config_example import EXAMPLE_CONFIG
from meshnode.host.radio_section import (
    RADIO_DRIVERS,
    REGION_FREQUENCY_HZ,
    RadioDriver,
    RadioSection,
    check_radio,
    default_frequency_hz,
    lora_params,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from meshnode.store.flatfile import StoreConfig

__all__ = [
    "EXAMPLE_CONFIG",
    "MAX_CONFIG_BYTES",
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
MAX_CONFIG_BYTES = 1 << 20  # every key with comments is a few KiB; more is not a config
MAX_BOX_NAME_CHARS = 40
_MAX_CONTENT_LIMIT = 65536
_MAX_VERIFY_THREADS = 64
_MAX_KEEP_DAYS = 3650  # a mailbox that keeps ten years is a misreading of the unit
_MAX_AUTHOR_SHARE = 1024
# A peer's name of a feed we do not keep costs ~100 B of RAM per link: 1,000,000 is 100 MB.
_MAX_UNKNOWN_FEEDS_LIMIT = 1_000_000
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
_URL = re.compile(r"https?://[^\s/?#]+\S*")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSection:
    """[node]: where the data lives, how big one entry's content may be, and how much a
    peer can make the node remember."""

    data_dir: str = ""
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    control_socket: str = ""
    max_unknown_feeds: int = ReplicationConfig().max_unknown_feeds
    peer_memory_cap_bytes: int = ReplicationConfig().peer_memory_cap_bytes
    verify_threads: int = 0  # 0: the cores this process may use


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
class WebSection:
    """[web]: the page and JSON API that phones on the box's WiFi use."""

    enabled: bool = True
    listen: str = "0.0.0.0:8080"
    box_name: str = ""
    tls_cert: str = ""  # HTTPS: PEM certificate chain (relative: to the config file's folder)
    tls_key: str = ""  # HTTPS: its unencrypted PEM private key; both or neither
    wifi_ssid: str = ""  # the poster's WiFi code: the network's name; empty: no WiFi code
    wifi_password: str = ""  # its WPA passphrase; empty: an open network
    page_url: str = ""  # the address on the poster; empty: http://HOST.local[:PORT]/


@dataclass(frozen=True, slots=True, kw_only=True)
class LanSection:
    """[lan]: TCP links, mDNS discovery and static peers."""

    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    mdns: bool = True
    peers: tuple[str, ...] = ()
    handshake_timeout_s: float = 15.0
    idle_timeout_s: float = 90.0
    max_connections: int = 64
    reserved_share: float = 0.25
    max_connections_per_address: int = 8
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole config file; ``source`` is its path, or "defaults"."""

    node: NodeSection = field(default_factory=NodeSection)
    store: StoreSection = field(default_factory=StoreSection)
    policy: PolicySection = field(default_factory=PolicySection)
    lan: LanSection = field(default_factory=LanSection)
    usb: UsbSection = field(default_factory=UsbSection)
    web: WebSection = field(default_factory=WebSection)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)
    radios: tuple[RadioSection, ...] = ()
    source: str = "defaults"


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

    def share(self, name: str, default: float) -> float:
        """A fraction in 0..1."""
        value = self.data.get(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(self._key(name), f"must be a share in 0.0..1.0, got {value!r}")
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
    cls: type[NodeSection | StoreSection | PolicySection | LanSection | UsbSection | WebSection]
    | type[MailboxConfig],
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
        max_unknown_feeds=t.integer(
            "max_unknown_feeds", d.max_unknown_feeds, 0, _MAX_UNKNOWN_FEEDS_LIMIT
        ),
        peer_memory_cap_bytes=t.size("peer_memory_cap_bytes", d.peer_memory_cap_bytes),
        verify_threads=t.integer("verify_threads", d.verify_threads, 0, _MAX_VERIFY_THREADS),
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


def _parse_mailbox(data: object) -> MailboxConfig:
    """[mailbox]: how long and how much of the private entries the node keeps past the caps."""
    t, d = _Table("mailbox", data, _names(MailboxConfig)), MailboxConfig()
    return MailboxConfig(
        keep_days=_keep_days(t.data.get("keep_days", d.keep_days)),
        max_bytes=t.size("max_bytes", d.max_bytes, lo=1 << 20),
        author_share=t.integer("author_share", d.author_share, 1, _MAX_AUTHOR_SHARE),
    )


def _keep_days(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError("mailbox.keep_days", f"must be a number of days, got {value!r}")
    if not 0 <= value <= _MAX_KEEP_DAYS:
        raise ConfigError("mailbox.keep_days", f"must be days in 0..{_MAX_KEEP_DAYS}, got {value}")
    return float(value)


def _parse_usb(data: object) -> UsbSection:
    t, d = _Table("usb", data, _names(UsbSection)), UsbSection()
    label = t.string("label", d.label)
    if len(label) > 16 or not label.isprintable():
        why = "must be a filesystem label: at most 16 printable characters"
        raise ConfigError("usb.label", f"{why}, got {label!r}")
    return UsbSection(label=label, cap_bytes=t.size("cap_bytes", d.cap_bytes, lo=1 << 20))


def _parse_web(data: object) -> WebSection:
    t, d = _Table("web", data, _names(WebSection)), WebSection()
    listen = t.string("listen", d.listen)
    _check_address(listen, "web.listen", lambda text: parse_host_port(text, any_port=True))
    box_name = t.string("box_name", d.box_name)
    if len(box_name) > MAX_BOX_NAME_CHARS or not box_name.isprintable():
        why = f"must be at most {MAX_BOX_NAME_CHARS} printable characters"
        raise ConfigError("web.box_name", f"{why}, got {box_name!r}")
    tls_cert, tls_key = t.string("tls_cert", d.tls_cert), t.string("tls_key", d.tls_key)
    if bool(tls_cert) != bool(tls_key):
        missing = "web.tls_key" if tls_cert else "web.tls_cert"
        raise ConfigError(missing, "is required too: HTTPS takes both tls_cert and tls_key")
    ssid, password, page_url = _poster_keys(t)
    return WebSection(
        enabled=t.boolean("enabled", d.enabled),
        listen=listen,
        box_name=box_name,
        tls_cert=tls_cert,
        tls_key=tls_key,
        wifi_ssid=ssid,
        wifi_password=password,
        page_url=page_url,
    )


def _poster_keys(t: _Table) -> tuple[str, str, str]:
    """[web] wifi_ssid, wifi_password and page_url, checked (the operator's poster)."""
    d = WebSection()
    ssid, password = t.string("wifi_ssid", d.wifi_ssid), t.string("wifi_password", d.wifi_password)
    if ssid and (len(ssid.encode("utf-8")) > 32 or not ssid.isprintable()):
        why = "must be a WiFi network name: 1 to 32 bytes of UTF-8, printable"
        raise ConfigError("web.wifi_ssid", f"{why}, got {ssid!r}")
    if password and not ssid:
        raise ConfigError("web.wifi_password", "needs web.wifi_ssid, the network's name")
    if password and not (8 <= len(password) <= 63 and all(" " <= c <= "~" for c in password)):
        why = "must be a WPA passphrase: 8 to 63 printable ASCII characters, or empty (open)"
        raise ConfigError("web.wifi_password", f"{why}, got {len(password)} characters")
    page_url = t.string("page_url", d.page_url)
    if page_url and not (_URL.fullmatch(page_url) and page_url.isprintable()):
        why = "must be an address starting with http:// or https://, with no spaces"
        raise ConfigError("web.page_url", f"{why}, got {page_url!r}")
    return ssid, password, page_url


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
        reserved_share=t.share("reserved_share", d.reserved_share),
        max_connections_per_address=t.integer(
            "max_connections_per_address", d.max_connections_per_address, 1, 10_000
        ),
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
    driver = cast("RadioDriver", t.choice("driver", "", RADIO_DRIVERS))
    port = t.string("port", "")
    if not port:
        raise ConfigError(f"radio[{i}].port", "is required: a device path or a pyserial URL")
    region = t.string("region", "")
    lora = driver != "serial"
    if lora and region not in REGION_FREQUENCY_HZ:
        raise ConfigError(
            f"radio[{i}].region",
            f"must be one of {', '.join(REGION_FREQUENCY_HZ)} for a LoRa radio, got {region!r}",
        )
    radio = RadioSection(
        name=t.string("name", f"radio{i}"),
        driver=driver,
        port=port,
        baud=t.integer("baud", 9600 if driver == "e22" else 115200, 1200, 4_000_000),
        region=region,
        frequency_hz=t.integer("frequency_hz", default_frequency_hz(driver, region), 0),
        bandwidth_hz=t.integer("bandwidth_hz", 125_000, 7_800, 500_000),
        spreading_factor=t.integer("spreading_factor", 9, 5, 12),
        coding_rate=t.integer("coding_rate", 5, 5, 8),
        tx_power_dbm=t.integer("tx_power_dbm", 14, -9, 30),
        control_share=t.seconds("control_share", 0.10, 0.0, 1.0),
        model=t.choice("model", "rylr998", ("rylr896", "rylr998")) if driver == "rylr" else "",
    )
    check_radio(f"radio[{i}]", radio)
    return radio


_SECTIONS = {
    "node": _parse_node,
    "store": _parse_store,
    "policy": _parse_policy,
    "lan": _parse_lan,
    "usb": _parse_usb,
    "web": _parse_web,
    "mailbox": _parse_mailbox,
    "radio": _parse_radios,
}


def parse_config(text_or_dict: str | Mapping[str, object], source: str = "<string>") -> Config:
    """Parse TOML text (or an already-parsed table) into a validated Config."""
    if isinstance(text_or_dict, str):
        try:
            data: Mapping[str, object] = tomllib.loads(text_or_dict)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, f"not valid TOML: {exc}") from exc
        except RecursionError:
            # tomllib parses nested arrays and inline tables by recursion: no real config
            # nests more than a few levels, so this one is refused whole.
            raise ConfigError(source, "not valid TOML: values nest too deeply") from None
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
        web=_parse_web(data.get("web", {})),
        mailbox=_parse_mailbox(data.get("mailbox", {})),
        radios=_parse_radios(data.get("radio", [])),
        source=source,
    )


def load_config(path: Path) -> Config:
    """Read and parse the config file at ``path``; ConfigError if unreadable or invalid."""
    try:
        raw = _read_config_file(path)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "config file is not UTF-8") from exc
    return parse_config(text, str(path))


def _read_config_file(path: Path) -> bytes:
    """The file's bytes; OSError for a file that is not regular or over MAX_CONFIG_BYTES."""
    # O_NONBLOCK: a FIFO named as the config must not hang the command before it is refused.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "a directory, not a file")
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        raw = b""
        while len(raw) <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_CONFIG_BYTES >> 20} MiB")
    return raw


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
    n = config.node
    replication = ReplicationConfig(
        max_unknown_feeds=n.max_unknown_feeds, peer_memory_cap_bytes=n.peer_memory_cap_bytes
    )
    return NodeConfig(
        max_content_bytes=n.max_content_bytes,
        policy=policy,
        replication=replication,
        mailbox=config.mailbox,
    )


def store_config(config: Config) -> StoreConfig:
    """FileStore's StoreConfig for ``config``."""
    # Imported here so that parsing a config never loads the disk-facing store module.
    from meshnode.store.flatfile import StoreConfig

    s = config.store
    return StoreConfig(
        fsync=s.fsync, fsync_batch_entries=s.fsync_batch_entries, segment_bytes=s.segment_bytes
    )

"""Config parsing: defaults, sizes, validation naming the dotted key, adapters."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from meshnode.errors import ConfigError
from meshnode.host.config import (
    EXAMPLE_CONFIG,
    Config,
    LanSection,
    NodeSection,
    PolicySection,
    StoreSection,
    UsbSection,
    load_config,
    node_config,
    parse_config,
    parse_size,
    store_config,
)
from meshnode.secure.identity import format_feed_id
from tests.fakes import identity

if TYPE_CHECKING:
    from pathlib import Path


def test_example_config_parses_to_the_defaults() -> None:
    config = parse_config(EXAMPLE_CONFIG, "example")
    assert config == dataclasses.replace(Config(), source="example")
    assert config.node == NodeSection()
    assert config.store == StoreSection()
    assert config.policy == PolicySection()


def test_example_config_documents_every_key() -> None:
    for section in (NodeSection, StoreSection, PolicySection):
        for f in dataclasses.fields(section):
            assert f"\n{f.name} = " in EXAMPLE_CONFIG


def test_empty_text_and_empty_dict_give_defaults() -> None:
    assert parse_config("", "x") == dataclasses.replace(Config(), source="x")
    assert parse_config({}, "defaults") == Config()


def test_values_are_read() -> None:
    config = parse_config(
        """
        [node]
        data_dir = "/srv/meshnode"
        max_content_bytes = 1024
        [store]
        fsync = "always"
        fsync_batch_entries = 10
        segment_bytes = "1MiB"
        [policy]
        max_hops = 3
        full_hops = 0
        partial_entries = 5
        feed_cap_bytes = "1MB"
        global_cap_bytes = 2048
        """
    )
    assert config.node == NodeSection(data_dir="/srv/meshnode", max_content_bytes=1024)
    assert config.store == StoreSection(
        fsync="always", fsync_batch_entries=10, segment_bytes=1 << 20
    )
    assert config.policy == PolicySection(
        max_hops=3, full_hops=0, partial_entries=5, feed_cap_bytes=10**6, global_cap_bytes=2048
    )


def test_verify_threads_is_read() -> None:
    assert parse_config("[node]\nverify_threads = 3\n").node.verify_threads == 3
    assert Config().node.verify_threads == 0  # one per core this process may use


def test_usb_section_is_read() -> None:
    config = parse_config('[usb]\nlabel = "MESHSYNC"\ncap_bytes = "4GiB"\n')
    assert config.usb == UsbSection(label="MESHSYNC", cap_bytes=4 << 30)
    assert Config().usb == UsbSection(label="", cap_bytes=1 << 30)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4096, 4096),
        (0, 0),
        ("4096", 4096),
        ("64MiB", 64 << 20),
        ("500MB", 500_000_000),
        ("1GiB", 1 << 30),
        ("2 KiB", 2048),
        ("3kb", 3000),
        ("7B", 7),
    ],
)
def test_sizes(value: object, expected: int) -> None:
    assert parse_size(value, "k") == expected


@pytest.mark.parametrize("value", [-1, "1.5GiB", "12 parsecs", "MiB", True, 1.0, [1]])
def test_bad_sizes_name_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^store\.segment_bytes: ") as info:
        parse_size(value, "store.segment_bytes")
    assert info.value.key == "store.segment_bytes"


def test_bad_value_names_the_full_dotted_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[policy]\npartial_entries = "x"\n')
    assert info.value.key == "policy.partial_entries"
    assert str(info.value) == "policy.partial_entries: must be an integer >= 1, got 'x'"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nmax_content_bytes = 0", "node.max_content_bytes"),
        ("[node]\nmax_content_bytes = 65537", "node.max_content_bytes"),
        ("[node]\nmax_content_bytes = true", "node.max_content_bytes"),
        ("[node]\ndata_dir = 5", "node.data_dir"),
        ("[node]\nverify_threads = -1", "node.verify_threads"),
        ("[node]\nverify_threads = 65", "node.verify_threads"),
        ('[store]\nfsync = "sometimes"', "store.fsync"),
        ("[store]\nfsync_batch_entries = 0", "store.fsync_batch_entries"),
        ('[store]\nsegment_bytes = "1KiB"', "store.segment_bytes"),
        ('[store]\nsegment_bytes = "2TiB"', "store.segment_bytes"),
        ("[policy]\nmax_hops = 7", "policy.max_hops"),
        ("[policy]\nmax_hops = -1", "policy.max_hops"),
        ("[policy]\nmax_hops = 1\nfull_hops = 2", "policy.full_hops"),
        ("[policy]\npartial_entries = 0", "policy.partial_entries"),
        ("[policy]\nfeed_cap_bytes = -5", "policy.feed_cap_bytes"),
        ("[usb]\nlabel = 5", "usb.label"),
        ('[usb]\nlabel = "A VERY LONG LABEL NAME"', "usb.label"),
        ('[usb]\nlabel = "TAB\\there"', "usb.label"),
        ('[usb]\ncap_bytes = "1KiB"', "usb.cap_bytes"),
        ('[usb]\ncap_bytes = "huge"', "usb.cap_bytes"),
        ("[usb]\nlabels = []", "usb.labels"),
        ('[policy]\nglobal_cap_bytes = "lots"', "policy.global_cap_bytes"),
        ("node = 3", "node"),
    ],
)
def test_bad_values_are_refused(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_unknown_key_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[policy]\nmax_hop = 3\n")
    assert info.value.key == "policy.max_hop"
    assert "unknown key" in str(info.value)
    assert "max_hops" in str(info.value)


def test_unknown_section_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^radios: unknown section"):
        parse_config("[radios]\nfreq_hz = 868000000\n")


def test_radio_is_an_array_of_tables() -> None:
    with pytest.raises(ConfigError, match=r"^radio: must be an array of tables"):
        parse_config("[radio]\nfreq_hz = 868000000\n")


RADIO = '[[radio]]\ndriver = "kiss"\nport = "/dev/ttyUSB0"\nregion = "EU868_869_5"\n'


def test_radio_defaults_follow_the_region() -> None:
    (radio,) = parse_config(RADIO).radios
    assert (radio.name, radio.frequency_hz, radio.spreading_factor) == ("radio0", 869525000, 9)
    assert radio.control_share == 0.10
    (cable,) = parse_config('[[radio]]\ndriver = "serial"\nport = "/dev/ttyS0"\n').radios
    assert (cable.region, cable.baud) == ("", 115200)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("frequency_hz = 868300000\n", "radio[0].frequency_hz"),  # not in 869.4-869.65
        ("tx_power_dbm = 28\n", "radio[0].tx_power_dbm"),
        ("spreading_factor = 13\n", "radio[0].spreading_factor"),
        ("control_share = 2\n", "radio[0].control_share"),
        ("colour = 1\n", "radio[0].colour"),
    ],
)
def test_bad_radio_values_name_the_key(extra: str, key: str) -> None:
    escaped = key.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    with pytest.raises(ConfigError, match="^" + escaped):
        parse_config(RADIO + extra)


def test_lora_radio_needs_a_region_and_every_radio_a_port() -> None:
    with pytest.raises(ConfigError, match=r"^radio\[0\]\.region"):
        parse_config('[[radio]]\ndriver = "e22"\nport = "/dev/serial0"\n')
    with pytest.raises(ConfigError, match=r"^radio\[0\]\.port"):
        parse_config('[[radio]]\ndriver = "serial"\n')


def test_an_e22_gets_a_channel_it_can_tune_or_a_clear_error() -> None:
    def e22(extra: str) -> str:
        return f'[[radio]]\ndriver = "e22"\nport = "/dev/serial0"\n{extra}'

    assert parse_config(e22('region = "EU868"\n')).radios[0].frequency_hz == 868_125_000
    assert parse_config(e22('region = "US915"\n')).radios[0].frequency_hz == 902_125_000
    with pytest.raises(ConfigError, match=r"^radio\[0\]\.region: an E22 has no channel"):
        parse_config(e22('region = "EU868_869_5"\n'))
    with pytest.raises(ConfigError, match=r"^radio\[0\]\.frequency_hz: E22 cannot tune"):
        parse_config(e22('region = "EU868"\nfrequency_hz = 868300000\n'))


def test_invalid_toml_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^my\.toml: not valid TOML"):
        parse_config("[node\n", "my.toml")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "meshnode.toml"
    path.write_text("[policy]\nmax_hops = 4\n")
    config = load_config(path)
    assert config.policy.max_hops == 4
    assert config.source == str(path)


def test_load_config_of_a_missing_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load_config(path)
    assert info.value.key == str(path)


def test_load_config_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "meshnode.toml"
    path.write_bytes(b"# \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_adapters_map_onto_core_and_store_configs() -> None:
    config = parse_config(
        '[node]\nmax_content_bytes = 2000\n[store]\nfsync = "never"\nsegment_bytes = "8MiB"\n'
        "[policy]\nmax_hops = 3\npartial_entries = 7\nglobal_cap_bytes = 99\n"
    )
    core = node_config(config)
    assert core.max_content_bytes == 2000
    assert (core.policy.max_hops, core.policy.partial_entries) == (3, 7)
    assert core.policy.global_cap_bytes == 99
    store = store_config(config)
    assert (store.fsync, store.segment_bytes, store.fsync_batch_entries) == ("never", 8 << 20, 1000)


# -- [lan] -------------------------------------------------------------------------------------

PEER_ID = format_feed_id(identity(5).feed_id)


def test_lan_defaults() -> None:
    assert LanSection() == LanSection(
        listen="0.0.0.0:7420",
        mdns=True,
        peers=(),
        handshake_timeout_s=15.0,
        idle_timeout_s=90.0,
        max_connections=64,
        reconnect_min_s=1.0,
        reconnect_max_s=300.0,
    )
    assert parse_config("").lan == LanSection()
    assert parse_config("[lan]\n").lan == LanSection()


def test_example_config_lan_is_the_defaults_and_documents_every_key() -> None:
    assert parse_config(EXAMPLE_CONFIG).lan == LanSection()
    for f in dataclasses.fields(LanSection):
        assert f"\n{f.name} = " in EXAMPLE_CONFIG


def test_lan_values_are_read() -> None:
    config = parse_config(
        f"""
        [lan]
        listen = "[::]:7500"
        mdns = false
        peers = ["10.0.0.2:7420", "[fe80::1%eth0]:7421{PEER_ID}", "pi.local:7422@{PEER_ID[1:]}"]
        handshake_timeout_s = 30
        idle_timeout_s = 45.5
        max_connections = 8
        reconnect_min_s = 0.5
        reconnect_max_s = 60
        """
    )
    assert config.lan == LanSection(
        listen="[::]:7500",
        mdns=False,
        peers=("10.0.0.2:7420", f"[fe80::1%eth0]:7421{PEER_ID}", f"pi.local:7422@{PEER_ID[1:]}"),
        handshake_timeout_s=30.0,
        idle_timeout_s=45.5,
        max_connections=8,
        reconnect_min_s=0.5,
        reconnect_max_s=60.0,
    )
    assert isinstance(config.lan.handshake_timeout_s, float)
    assert isinstance(config.lan.reconnect_max_s, float)


def test_connection_slot_keys_are_read_and_their_errors_say_the_range() -> None:
    lan = parse_config("[lan]\nreserved_share = 1\nmax_connections_per_address = 1").lan
    assert (lan.reserved_share, lan.max_connections_per_address) == (1.0, 1)
    assert isinstance(lan.reserved_share, float)
    assert parse_config("[lan]\nreserved_share = 0.0").lan.reserved_share == 0.0
    with pytest.raises(ConfigError) as info:
        parse_config("[lan]\nreserved_share = 2")
    assert str(info.value) == "lan.reserved_share: must be a share in 0.0..1.0, got 2"


def test_lan_range_edges_are_accepted() -> None:
    lan = parse_config(
        "[lan]\nhandshake_timeout_s = 600\nidle_timeout_s = 1\nmax_connections = 10000\n"
        "reconnect_min_s = 3600\nreconnect_max_s = 3600\n"
    ).lan
    assert (lan.handshake_timeout_s, lan.idle_timeout_s, lan.max_connections) == (600, 1, 10000)
    assert (lan.reconnect_min_s, lan.reconnect_max_s) == (3600, 3600)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[lan]\nlisten = "7420"', "lan.listen"),
        ('[lan]\nlisten = "0.0.0.0:65536"', "lan.listen"),
        ('[lan]\nlisten = ":7420"', "lan.listen"),
        ('[lan]\nlisten = "::1:7420"', "lan.listen"),
        ("[lan]\nlisten = 7420", "lan.listen"),
        ('[lan]\nmdns = "yes"', "lan.mdns"),
        ("[lan]\nmdns = 1", "lan.mdns"),
        ('[lan]\npeers = "10.0.0.2:7420"', "lan.peers"),
        ('[lan]\npeers = ["10.0.0.2:7420", 5]', "lan.peers"),
        ('[lan]\npeers = ["10.0.0.2:7420", "10.0.0.3"]', "lan.peers[1]"),
        ('[lan]\npeers = ["10.0.0.2:70000"]', "lan.peers[0]"),
        ('[lan]\npeers = ["10.0.0.2:7420@nobody"]', "lan.peers[0]"),
        ("[lan]\nhandshake_timeout_s = 0", "lan.handshake_timeout_s"),
        ("[lan]\nhandshake_timeout_s = 0.05", "lan.handshake_timeout_s"),
        ("[lan]\nhandshake_timeout_s = 601", "lan.handshake_timeout_s"),
        ("[lan]\nhandshake_timeout_s = true", "lan.handshake_timeout_s"),
        ('[lan]\nhandshake_timeout_s = "15"', "lan.handshake_timeout_s"),
        ("[lan]\nhandshake_timeout_s = nan", "lan.handshake_timeout_s"),
        ("[lan]\nidle_timeout_s = 0.5", "lan.idle_timeout_s"),
        ("[lan]\nidle_timeout_s = inf", "lan.idle_timeout_s"),
        ("[lan]\nmax_connections = 0", "lan.max_connections"),
        ("[lan]\nmax_connections = 10001", "lan.max_connections"),
        ("[lan]\nmax_connections = 1.0", "lan.max_connections"),
        ("[lan]\nmax_connections = false", "lan.max_connections"),
        ("[lan]\nreserved_share = -0.1", "lan.reserved_share"),
        ("[lan]\nreserved_share = 1.5", "lan.reserved_share"),
        ('[lan]\nreserved_share = "25%"', "lan.reserved_share"),
        ("[lan]\nreserved_share = true", "lan.reserved_share"),
        ("[lan]\nreserved_share = nan", "lan.reserved_share"),
        ("[lan]\nmax_connections_per_address = 0", "lan.max_connections_per_address"),
        ("[lan]\nmax_connections_per_address = 10001", "lan.max_connections_per_address"),
        ("[lan]\nmax_connections_per_address = 2.5", "lan.max_connections_per_address"),
        ("[lan]\nreconnect_min_s = 0", "lan.reconnect_min_s"),
        ("[lan]\nreconnect_min_s = 3601", "lan.reconnect_min_s"),
        ("[lan]\nreconnect_max_s = 86401", "lan.reconnect_max_s"),
        ("[lan]\nreconnect_min_s = 10\nreconnect_max_s = 5", "lan.reconnect_max_s"),
        ("[lan]\nfoo = 1", "lan.foo"),
        ("lan = 3", "lan"),
    ],
)
def test_bad_lan_values_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_lan_listen_may_take_any_free_port_but_a_peer_may_not() -> None:
    assert parse_config('[lan]\nlisten = "0.0.0.0:0"').lan.listen == "0.0.0.0:0"
    with pytest.raises(ConfigError) as info:
        parse_config('[lan]\npeers = ["10.0.0.2:0"]')
    assert str(info.value) == "lan.peers[0]: '10.0.0.2:0': port must be 1..65535"


def test_bad_peer_message_carries_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[lan]\npeers = ["10.0.0.2:7420", "fe80::1:7420"]')
    assert str(info.value) == (
        "lan.peers[1]: 'fe80::1:7420': put an IPv6 address in brackets: [ADDRESS]:PORT"
    )


def test_reconnect_bounds_message() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[lan]\nreconnect_min_s = 10\nreconnect_max_s = 5")
    assert str(info.value) == "lan.reconnect_max_s: must be >= lan.reconnect_min_s"


def test_unknown_lan_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[lan]\nfoo = 1")
    assert str(info.value) == (
        "lan.foo: unknown key (known: listen, mdns, peers, handshake_timeout_s, idle_timeout_s, "
        "max_connections, reserved_share, max_connections_per_address, reconnect_min_s, "
        "reconnect_max_s)"
    )


@pytest.mark.parametrize("peer", ["10.0.0.2:\u00b2", "10.0.0.2:7420@\u00e9.ed25519"])
def test_non_ascii_peer_gives_config_error(peer: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"lan": {"peers": [peer]}})
    assert info.value.key == "lan.peers[0]"

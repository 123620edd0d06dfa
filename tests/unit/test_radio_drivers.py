"""Radio drivers (radio/drivers.py): on-air sizes, command answers and confirmed settings."""

from __future__ import annotations

import random

import pytest

from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.errors import LinkError
from meshnode.host.config import RadioSection
from meshnode.links.radio import RadioInterface
from meshnode.radio import rnode, rylr
from meshnode.radio.drivers import make_driver
from meshnode.radio.kiss import encode_kiss
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import identity


def _radio(driver: str, **overrides: object) -> RadioSection:
    fields: dict[str, object] = {
        "name": "lora",
        "driver": driver,
        "port": "/dev/null",
        "region": "EU868",
        "frequency_hz": 868_100_000,
        "bandwidth_hz": 125_000,
        "spreading_factor": 9,
        "coding_rate": 5,
        "tx_power_dbm": 14,
    }
    fields.update(overrides)
    return RadioSection(**fields)  # type: ignore[arg-type]


def test_air_sizes_count_what_each_device_really_sends() -> None:
    packet = bytes(range(100)) + b"\xc0\xdb"  # two bytes KISS must escape
    assert make_driver(_radio("kiss")).air_sizes(packet) == [103]  # RNode's own header byte
    assert make_driver(_radio("e22")).air_sizes(packet) == [len(encode_kiss(packet))]
    # base64 without padding: 102 bytes -> 136 characters, plus the REYAX header.
    assert make_driver(_radio("rylr")).air_sizes(packet) == [136 + 8]
    assert make_driver(_radio("serial")).air_sizes(packet) == [len(encode_kiss(packet))]


def test_e22_packets_longer_than_a_sub_packet_take_several() -> None:
    sizes = make_driver(_radio("e22")).air_sizes(bytes(230))
    assert sum(sizes) == len(encode_kiss(bytes(230)))
    assert all(size <= 240 for size in sizes)


def test_preambles_per_device() -> None:
    assert make_driver(_radio("kiss")).preamble_symbols == 18  # 18 symbols is over 24 ms at SF9
    assert make_driver(_radio("kiss", spreading_factor=7)).preamble_symbols == 24
    assert make_driver(_radio("rylr", model="rylr998")).preamble_symbols == 12
    assert make_driver(_radio("rylr", model="rylr896")).preamble_symbols == 7


PARAMS = rnode.RNodeParams(
    frequency_hz=868_100_000,
    bandwidth_hz=125_000,
    spreading_factor=9,
    coding_rate=5,
    tx_power_dbm=14,
)


def _echoes(params: rnode.RNodeParams, **wrong: int) -> bytes:
    values = {
        rnode.RNodeCommand.FREQUENCY: (params.frequency_hz, 4),
        rnode.RNodeCommand.BANDWIDTH: (params.bandwidth_hz, 4),
        rnode.RNodeCommand.TX_POWER: (params.tx_power_dbm, 1),
        rnode.RNodeCommand.SF: (params.spreading_factor, 1),
        rnode.RNodeCommand.CR: (params.coding_rate, 1),
        rnode.RNodeCommand.RADIO_STATE: (1, 1),
    }
    out = b""
    for command, (value, width) in values.items():
        value = wrong.get(command.name.lower(), value)
        out += rnode.encode_command(command, value.to_bytes(width, "big"))
    return out


def test_rnode_settings_are_confirmed_by_their_echoes() -> None:
    driver = make_driver(_radio("kiss"))
    driver.setup()
    assert driver.problems()  # nothing echoed yet: nothing confirmed
    assert driver.feed(_echoes(PARAMS)) == []
    assert driver.problems() == []


def test_an_rnode_that_echoes_another_frequency_is_reported() -> None:
    driver = make_driver(_radio("kiss"))
    driver.setup()
    driver.feed(_echoes(PARAMS, frequency=869_525_000, sf=7))
    assert driver.problems() == ["frequency not confirmed", "sf not confirmed"]


def test_rylr_answers_are_taken_once_and_refusals_reported() -> None:
    driver = make_driver(_radio("rylr"))
    assert driver.answers_commands
    driver.setup()
    text = rylr.encode_payload(b"hello")
    got = driver.feed(b"+OK\r\n+ERR=18\r\n+RCV=0,%d,%s,-60,9\r\n" % (len(text), text.encode()))
    assert got == [b"hello"]
    assert driver.take_answers() == [True, False]
    assert driver.take_answers() == []
    assert driver.problems() == [rylr.ERROR_MEANINGS[18]]
    assert driver.setup()
    assert driver.problems() == []


@pytest.mark.parametrize("driver", ["serial", "e22", "kiss"])
def test_devices_that_never_answer_report_no_answers(driver: str) -> None:
    d = make_driver(_radio(driver))
    assert not d.answers_commands
    d.feed(b"+OK\r\n")
    assert d.take_answers() == []


def test_rylr_writes_flash_settings_only_when_they_differ() -> None:
    driver = make_driver(_radio("rylr", model="rylr998"))
    assert driver.setup() == list(rylr.FLASH_QUERIES)
    driver.feed(b"+ADDRESS=0\r\n+NETWORKID=18\r\n")
    assert driver.take_answers() == [True, True]  # a query's answer is its value
    lines = driver.setup_after()
    assert not any(line.startswith((b"AT+ADDRESS", b"AT+NETWORKID")) for line in lines)
    assert b"AT+PARAMETER=9,7,1,12\r\n" in lines
    driver.setup()
    driver.feed(b"+ADDRESS=0\r\n+NETWORKID=6\r\n")
    assert b"AT+NETWORKID=18\r\n" in driver.setup_after()


def test_a_rylr_that_restarts_is_set_up_again() -> None:
    driver = make_driver(_radio("rylr"))
    with pytest.raises(LinkError, match="restarted"):
        driver.feed(b"+READY\r\n")


@pytest.mark.parametrize(
    ("driver", "sf", "mtu"), [("kiss", 7, 242), ("kiss", 9, 56), ("rylr", 7, 180)]
)
def test_us915_packets_are_cut_to_stay_under_the_dwell_limit(
    driver: str, sf: int, mtu: int
) -> None:
    """A full 254-byte RNode frame at SF7/125 kHz takes 416 ms: over US915's 400 ms."""
    radio = _radio(driver, region="US915", frequency_hz=904_125_000, spreading_factor=sf)
    node = Node(
        identity(1), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
    )
    interface = RadioInterface(node, radio, rng=random.Random(1))
    assert interface._mtu == mtu
    assert interface._airtime_s(bytes(mtu)) <= 0.4
    if mtu < interface.driver.packet_mtu:  # cut no more than needed
        assert interface._airtime_s(bytes(mtu + 1)) > 0.4

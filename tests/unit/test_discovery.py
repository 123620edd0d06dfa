"""Discovery TXT record: round trip, foreign records ignored, garbage never raises."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import ServiceInfo

from meshnode.links.discovery import (
    DISCOVERY_VERSION,
    SERVICE_TYPE,
    _pick_host,
    parse_properties,
    service_properties,
)
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, network_tag
from meshnode.types import FeedId
from tests.fakes import identity

OTHER_NETWORK_KEY = bytes(range(32))
ME = identity(1).feed_id


def _txt(
    feed_id: FeedId = ME, network_key: bytes = DEFAULT_NETWORK_KEY
) -> dict[bytes, bytes | None]:
    """What a browser gets back: the TXT record as bytes keys and values."""
    props = service_properties(feed_id, network_key)
    return {k.encode(): v.encode() for k, v in props.items()}


def test_service_type_is_the_registered_form() -> None:
    assert SERVICE_TYPE == "_meshnode._tcp.local."


def test_round_trip() -> None:
    assert parse_properties(_txt(), DEFAULT_NETWORK_KEY) == ME


def test_layout() -> None:
    props = service_properties(ME, DEFAULT_NETWORK_KEY)
    assert props == {
        "v": str(DISCOVERY_VERSION),
        "id": base64.b64encode(ME).decode(),
        "net": network_tag(DEFAULT_NETWORK_KEY),
    }
    assert len(props["id"]) == 44
    assert len(props["net"]) == 8


def test_txt_fits_the_budget() -> None:
    strings = [f"{k}={v}".encode() for k, v in service_properties(ME, DEFAULT_NETWORK_KEY).items()]
    assert all(len(s) <= 255 for s in strings)
    assert all(len(k) <= 9 for k in service_properties(ME, DEFAULT_NETWORK_KEY))
    assert sum(1 + len(s) for s in strings) == 65  # the byte count in the module docstring


def test_another_network_is_ignored() -> None:
    assert parse_properties(_txt(network_key=OTHER_NETWORK_KEY), DEFAULT_NETWORK_KEY) is None


@pytest.mark.parametrize("version", [b"0", b"2", b"", b"01", b"1.0", None])
def test_another_version_is_ignored(version: bytes | None) -> None:
    assert parse_properties({**_txt(), b"v": version}, DEFAULT_NETWORK_KEY) is None


@pytest.mark.parametrize("key", [b"v", b"id", b"net"])
def test_a_missing_key_is_ignored(key: bytes) -> None:
    props = _txt()
    del props[key]
    assert parse_properties(props, DEFAULT_NETWORK_KEY) is None


@pytest.mark.parametrize(
    "bad_id",
    [
        None,
        b"",
        b"not base64 at all!",
        base64.b64encode(bytes(31)),  # wrong length
        base64.b64encode(bytes(33)),
        base64.b64encode(ME)[:-1],  # padding gone
        base64.b64encode(ME).rstrip(b"=") + b"A=",  # non-canonical last character
        base64.urlsafe_b64encode(b"\xff" * 32),  # other alphabet
        b"\xff\xfe" * 22,  # not UTF-8
        b" " + base64.b64encode(ME),
    ],
)
def test_a_malformed_id_is_ignored(bad_id: bytes | None) -> None:
    assert parse_properties({**_txt(), b"id": bad_id}, DEFAULT_NETWORK_KEY) is None


def test_other_keys_are_tolerated() -> None:
    props = {**_txt(), b"caps": b"lz4,usb", b"flag": None}
    assert parse_properties(props, DEFAULT_NETWORK_KEY) == ME


_value = st.none() | st.binary(max_size=300)
_known = st.sampled_from([b"v", b"id", b"net"])


@given(props=st.dictionaries(_known | st.binary(max_size=12), _value, max_size=6))
def test_arbitrary_txt_never_raises(props: dict[bytes, bytes | None]) -> None:
    result = parse_properties(props, DEFAULT_NETWORK_KEY)
    assert result is None or base64.b64encode(result) == props[b"id"]


@given(raw=st.binary(min_size=32, max_size=32), garbage=_value)
def test_a_valid_record_with_one_garbage_value(raw: bytes, garbage: bytes | None) -> None:
    props = _txt(FeedId(raw))
    assert parse_properties(props, DEFAULT_NETWORK_KEY) == raw
    for key in props:
        result = parse_properties({**props, key: garbage}, DEFAULT_NETWORK_KEY)
        assert result is None or result == raw


def test_round_trip_through_zeroconf_txt_encoding() -> None:
    info = ServiceInfo(
        SERVICE_TYPE,
        f"mn-0123456789abcdef.{SERVICE_TYPE}",
        port=8008,
        properties=service_properties(ME, DEFAULT_NETWORK_KEY),
    )
    assert len(info.text) == 65
    decoded = ServiceInfo(SERVICE_TYPE, info.name, properties=info.text)  # raw TXT, as received
    assert parse_properties(decoded.properties, DEFAULT_NETWORK_KEY) == ME


@pytest.mark.parametrize(
    ("v4", "v6", "expected"),
    [
        (["192.0.2.7", "10.42.0.5"], ["fe80::1%2"], "10.42.0.5"),  # on our subnet wins
        (["192.0.2.7"], ["fe80::1%2"], "192.0.2.7"),  # then any IPv4
        ([], ["fe80::1%2"], "fe80::1%2"),  # then IPv6, scope kept
        ([], [], None),
    ],
)
def test_pick_host_prefers_a_reachable_ipv4(
    v4: list[str], v6: list[str], expected: str | None
) -> None:
    local = [ipaddress.IPv4Network("10.42.0.0/24"), ipaddress.IPv4Network("127.0.0.0/8")]
    assert _pick_host(v4, v6, local) == expected

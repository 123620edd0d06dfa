"""Text forms of TCP addresses: HOST:PORT, [IPv6]:PORT and HOST:PORT@ID."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from meshnode.errors import DecodeError
from meshnode.host.address import (
    DEFAULT_PORT,
    PeerAddress,
    format_host_port,
    parse_host_port,
    parse_peer,
)
from meshnode.secure.identity import format_feed_id
from meshnode.types import FeedId
from tests.fakes import identity

KEY = identity(3).feed_id
KEY_TEXT = format_feed_id(KEY)  # "@<base64>.ed25519"


def test_default_port() -> None:
    assert DEFAULT_PORT == 7420


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.20:7420", ("192.168.1.20", 7420)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("pi.local:65535", ("pi.local", 65535)),
        ("localhost:08080", ("localhost", 8080)),
        ("[::]:7420", ("::", 7420)),
        ("[::1]:9", ("::1", 9)),
        ("[fe80::1%eth0]:7420", ("fe80::1%eth0", 7420)),
        ("[2001:db8::42]:443", ("2001:db8::42", 443)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("10.0.0.1", 7420, "10.0.0.1:7420"),
        ("pi.local", 1, "pi.local:1"),
        ("::", 7420, "[::]:7420"),
        ("fe80::1%eth0", 7420, "[fe80::1%eth0]:7420"),
    ],
)
def test_format_host_port(host: str, port: int, expected: str) -> None:
    assert format_host_port(host, port) == expected


def test_any_port_accepts_port_0_for_listening() -> None:
    assert parse_host_port("0.0.0.0:0", any_port=True) == ("0.0.0.0", 0)
    assert parse_host_port("[::]:0", any_port=True) == ("::", 0)
    assert parse_host_port("[::]:7420", any_port=True) == ("::", 7420)
    with pytest.raises(DecodeError) as info:
        parse_host_port("0.0.0.0:65536", any_port=True)
    assert str(info.value) == "'0.0.0.0:65536': port must be 0..65535"


def test_a_peer_never_has_port_0() -> None:
    with pytest.raises(DecodeError) as info:
        parse_peer("10.0.0.1:0")
    assert str(info.value) == "'10.0.0.1:0': port must be 1..65535"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:7420", PeerAddress(host="10.0.0.1", port=7420)),
        ("pi.local:7421", PeerAddress(host="pi.local", port=7421)),
        ("[fe80::1%eth0]:7420", PeerAddress(host="fe80::1%eth0", port=7420)),
        (f"10.0.0.1:7420{KEY_TEXT}", PeerAddress(host="10.0.0.1", port=7420, feed_id=KEY)),
        (f"10.0.0.1:7420@{KEY_TEXT[1:]}", PeerAddress(host="10.0.0.1", port=7420, feed_id=KEY)),
        (f"[::1]:7420{KEY_TEXT}", PeerAddress(host="::1", port=7420, feed_id=KEY)),
        (f" pi.local:7420 {KEY_TEXT} ", PeerAddress(host="pi.local", port=7420, feed_id=KEY)),
    ],
)
def test_parse_peer(text: str, expected: PeerAddress) -> None:
    assert parse_peer(text) == expected


def test_parse_peer_without_id_has_no_key() -> None:
    assert parse_peer("pi.local:7420").feed_id is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (PeerAddress(host="10.0.0.1", port=7420), "10.0.0.1:7420"),
        (PeerAddress(host="fe80::1%eth0", port=7420), "[fe80::1%eth0]:7420"),
        (PeerAddress(host="pi.local", port=1, feed_id=KEY), f"pi.local:1{KEY_TEXT}"),
        (PeerAddress(host="::1", port=2, feed_id=KEY), f"[::1]:2{KEY_TEXT}"),
    ],
)
def test_peer_address_str(address: PeerAddress, expected: str) -> None:
    assert str(address) == expected


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1:7420",
        "pi.local:65535",
        "[::1]:7420",
        "[fe80::1%eth0]:7420",
        f"10.0.0.1:7420{KEY_TEXT}",
        f"[fe80::1%eth0]:7420{KEY_TEXT}",
    ],
)
def test_str_of_parse_peer_round_trips(text: str) -> None:
    assert str(parse_peer(text)) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pi.local", "expected HOST:PORT"),
        ("", "expected HOST:PORT"),
        ("pi.local:", "port must be 1..65535"),
        ("pi.local:0", "port must be 1..65535"),
        ("pi.local:65536", "port must be 1..65535"),
        ("pi.local:99999999999999999999", "port must be 1..65535"),
        ("pi.local:http", "port must be 1..65535"),
        ("pi.local:-1", "port must be 1..65535"),
        ("pi.local:+80", "port must be 1..65535"),
        ("pi.local: 80", "port must be 1..65535"),
        ("fe80::1:7420", "put an IPv6 address in brackets: [ADDRESS]:PORT"),
        ("::1", "put an IPv6 address in brackets: [ADDRESS]:PORT"),
        ("[::1]", "an IPv6 address goes as [ADDRESS]:PORT"),
        ("[::1:7420", "an IPv6 address goes as [ADDRESS]:PORT"),
        ("[::1]7420", "an IPv6 address goes as [ADDRESS]:PORT"),
        ("[::1]:", "port must be 1..65535"),
        (":7420", "missing or malformed host"),
        ("[]:7420", "an IPv6 address goes as [ADDRESS]:PORT"),
        ("pi local:7420", "missing or malformed host"),
    ],
)
def test_bad_host_port(text: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_host_port(text)
    assert str(info.value) == f"{text!r}: {reason}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pi.local:7420@", "not a feed id"),
        ("pi.local:7420@nonsense", "not a feed id"),
        ("pi.local:7420@@AAAA.ed25519", "feed id must hold 32 bytes, got 3"),
        ("pi.local:7420@!!!!.ed25519", "feed id is not valid base64"),
        (f"pi.local:7420{KEY_TEXT.removesuffix('.ed25519')}.sha256", "not a feed id"),
        (f"pi.local{KEY_TEXT}", "expected HOST:PORT"),
        (f"pi.local:0{KEY_TEXT}", "port must be 1..65535"),
    ],
)
def test_bad_peer(text: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse_peer(text)


_HOSTS = st.one_of(
    st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){3}\Z"),
    st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}\Z"),
    st.from_regex(r"\A[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}(%[a-z0-9]{1,8})?\Z"),
)
_KEYS = st.none() | st.binary(min_size=32, max_size=32).map(FeedId)


@given(host=_HOSTS, port=st.integers(1, 65535), feed_id=_KEYS)
def test_peer_address_round_trips(host: str, port: int, feed_id: FeedId | None) -> None:
    address = PeerAddress(host=host, port=port, feed_id=feed_id)
    assert parse_peer(str(address)) == address
    assert parse_host_port(format_host_port(host, port)) == (host, port)


# Pieces of peer text, so that hypothesis reaches every branch, not only "no colon".
_PIECES = st.sampled_from(
    ["[", "]", ":", "@", ".ed25519", "0", "7420", "65536", "::1", "pi", " ", "%", KEY_TEXT]
)
_ASCII_PEER_TEXT = st.lists(_PIECES | st.text(st.characters(max_codepoint=127)), max_size=8).map(
    "".join
)


@given(_ASCII_PEER_TEXT)
def test_any_ascii_text_gives_a_peer_or_decode_error(text: str) -> None:
    try:
        address = parse_peer(text)
    except DecodeError:
        return
    assert 0 < address.port < 65536
    assert address.host
    assert address.feed_id is None or len(address.feed_id) == 32


@given(st.lists(_PIECES | st.text(), max_size=8).map("".join))
@example("pi.local:\u00b2")
def test_any_text_gives_a_peer_or_decode_error(text: str) -> None:
    try:
        address = parse_peer(text)
    except DecodeError:
        return
    assert 0 < address.port < 65536


@pytest.mark.parametrize(
    "text",
    [
        # address.py: "²".isdigit() is True, then int("²") raises ValueError.
        "pi.local:\u00b2",
        # identity.parse_feed_id: b64decode of non-ASCII str raises a plain ValueError.
        "pi.local:7420@\u00e9.ed25519",
    ],
)
def test_non_ascii_gives_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_peer(text)


def test_brackets_hold_only_ipv6_so_str_always_parses_back() -> None:
    with pytest.raises(DecodeError, match=r"IPv6 address goes as \[ADDRESS\]:PORT"):
        parse_peer("[[]:2")
    address = parse_peer("[::1]:2")
    assert parse_peer(str(address)) == address

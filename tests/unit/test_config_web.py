"""[web] keys of the operator's poster: wifi_ssid, wifi_password, page_url."""

from __future__ import annotations

import dataclasses

import pytest

from meshnode.errors import ConfigError
from meshnode.host.config import EXAMPLE_CONFIG, WebSection, parse_config


def _web(body: str) -> WebSection:
    return parse_config(f"[web]\n{body}").web


def test_the_poster_keys_default_to_empty_and_are_documented() -> None:
    web = WebSection()
    assert (web.wifi_ssid, web.wifi_password, web.page_url) == ("", "", "")
    assert parse_config(EXAMPLE_CONFIG).web == web
    for name in ("wifi_ssid", "wifi_password", "page_url"):
        assert name in {f.name for f in dataclasses.fields(WebSection)}
        assert f"\n{name} = " in EXAMPLE_CONFIG


@pytest.mark.parametrize(
    ("body", "ssid", "password", "url"),
    [
        ('wifi_ssid = "North Village"\nwifi_password = "choose-a-long-one"', "North Village",
         "choose-a-long-one", ""),
        ('wifi_ssid = "Open Square"', "Open Square", "", ""),
        ('wifi_ssid = "x"\nwifi_password = "12345678"', "x", "12345678", ""),
        (f'wifi_ssid = "{"é" * 16}"\nwifi_password = "{"~" * 63}"', "é" * 16, "~" * 63, ""),
        ('wifi_ssid = " a;b:\\"c\\\\ "\nwifi_password = " ;:,\\"\\\\ 123"', ' a;b:"c\\ ',
         ' ;:,"\\ 123', ""),
        ('page_url = "http://10.42.0.1/"', "", "", "http://10.42.0.1/"),
        ('page_url = "https://north.example:8443/page?x=1"', "", "",
         "https://north.example:8443/page?x=1"),
    ],
)  # fmt: skip
def test_good_values_are_read(body: str, ssid: str, password: str, url: str) -> None:
    web = _web(body)
    assert (web.wifi_ssid, web.wifi_password, web.page_url) == (ssid, password, url)


@pytest.mark.parametrize(
    ("body", "key", "says"),
    [
        (f'wifi_ssid = "{"a" * 33}"', "web.wifi_ssid", "1 to 32 bytes"),
        (f'wifi_ssid = "{"é" * 17}"', "web.wifi_ssid", "1 to 32 bytes"),  # 34 bytes
        ('wifi_ssid = "tab\\there"', "web.wifi_ssid", "printable"),
        ("wifi_ssid = 7", "web.wifi_ssid", "must be a string"),
        ('wifi_password = "choose-a-long-one"', "web.wifi_password", "needs web.wifi_ssid"),
        ('wifi_ssid = "x"\nwifi_password = "1234567"', "web.wifi_password", "8 to 63"),
        (f'wifi_ssid = "x"\nwifi_password = "{"a" * 64}"', "web.wifi_password", "8 to 63"),
        ('wifi_ssid = "x"\nwifi_password = "pässwörter"', "web.wifi_password", "ASCII"),
        ('wifi_ssid = "x"\nwifi_password = "new\\nline12"', "web.wifi_password", "ASCII"),
        ('page_url = "10.42.0.1"', "web.page_url", "http:// or https://"),
        ('page_url = "ftp://box/"', "web.page_url", "http:// or https://"),
        ('page_url = "http://"', "web.page_url", "http:// or https://"),
        ('page_url = "http://a b/"', "web.page_url", "http:// or https://"),
        ('page_url = "javascript:alert(1)"', "web.page_url", "http:// or https://"),
    ],
)
def test_bad_values_name_the_key(body: str, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        _web(body)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert says in str(info.value)


def test_the_password_is_never_echoed_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        _web('wifi_ssid = "x"\nwifi_password = "secret!"')
    assert "secret!" not in str(info.value)

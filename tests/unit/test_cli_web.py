"""``meshnode web qr`` in-process: the poster's codes on the terminal, as JSON and as files."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.test_cli import Cli

WIFI = 'wifi_ssid = "North; Village"\nwifi_password = "choose-a-long-one"\n'
WIFI_CODE = r"WIFI:T:WPA;S:North\; Village;P:choose-a-long-one;;"


@pytest.fixture
def hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine is called village-box.lan; its mDNS name is village-box.local."""
    monkeypatch.setattr(socket, "gethostname", lambda: "village-box.lan")


def _config(home: Path, web: str) -> str:
    path = home / "meshnode.toml"
    path.write_text(f"[web]\n{web}", encoding="utf-8")
    return str(path)


def test_json_gives_the_wifi_code_and_the_configured_address(cli: Cli, home: Path) -> None:
    config = _config(home, WIFI + 'page_url = "http://10.42.0.1/"\n')
    result = cli("--config", config, "web", "qr", "--json")
    assert result.code == 0, result.err
    assert result.json() == {"wifi": WIFI_CODE, "url": "http://10.42.0.1/"}
    override = cli("--config", config, "web", "qr", "--json", "--url", "https://n.example/")
    assert override.json()["url"] == "https://n.example/"


@pytest.mark.parametrize(
    ("web", "url"),
    [
        ("", "http://village-box.local:8080/"),
        ('listen = "0.0.0.0:80"\n', "http://village-box.local/"),
        ('listen = "[::]:8000"\n', "http://village-box.local:8000/"),
    ],
)
@pytest.mark.usefixtures("hostname")
def test_without_a_wifi_or_an_address_the_default_is_the_mdns_name(
    cli: Cli, home: Path, web: str, url: str
) -> None:
    result = cli("--config", _config(home, web), "web", "qr", "--json")
    assert result.json() == {"wifi": None, "url": url}


@pytest.mark.usefixtures("hostname")
def test_the_terminal_shows_both_codes_and_writes_out_their_words(cli: Cli, home: Path) -> None:
    result = cli("--config", _config(home, WIFI), "web", "qr")
    assert result.code == 0, result.err
    assert "Join the village WiFi" in result.out
    assert "North; Village" in result.out
    assert "choose-a-long-one" in result.out
    assert "http://village-box.local:8080/" in result.out
    assert result.out.count("\u2588" * 20) >= 4  # two codes' quiet zones, top and bottom
    assert not (home / "data").exists()  # it needs no data dir


def test_files_get_the_page_code_and_the_wifi_code_beside_it(cli: Cli, home: Path) -> None:
    config = _config(home, WIFI)
    svg, png = home / "poster.svg", home / "out" / "poster.png"
    png.parent.mkdir()
    result = cli("--config", config, "web", "qr", "--svg", str(svg), "--png", str(png))
    assert result.code == 0, result.err
    wifi_svg, wifi_png = home / "poster-wifi.svg", home / "out" / "poster-wifi.png"
    assert result.out.splitlines() == [f"wrote {p}" for p in (svg, wifi_svg, png, wifi_png)]
    for path in (svg, wifi_svg):
        assert ElementTree.fromstring(path.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"
    for path in (png, wifi_png):
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The WiFi code holds more text, so it needs more modules: the files are not swapped.
    assert len(wifi_png.read_bytes()) > len(png.read_bytes())
    assert len(wifi_svg.read_bytes()) > len(svg.read_bytes())


def test_no_wifi_means_one_file(cli: Cli, home: Path) -> None:
    png = home / "page.png"
    result = cli("--config", _config(home, ""), "web", "qr", "--png", str(png))
    assert result.out == f"wrote {png}\n"
    assert not (home / "page-wifi.png").exists()


def test_an_unwritable_file_is_a_clear_error(cli: Cli, home: Path) -> None:
    result = cli("--config", _config(home, ""), "web", "qr", "--svg", str(home / "no" / "x.svg"))
    assert result.code == 1
    assert result.err.startswith("meshnode: error: cannot write ")
    assert "No such file or directory" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("url", ["ftp://box/", "box.local", "http://", "http://a b/"])
def test_a_bad_url_is_a_usage_error(cli: Cli, home: Path, url: str) -> None:
    result = cli("--config", _config(home, ""), "web", "qr", "--url", url)
    assert result.code == 2
    assert "not an http:// or https:// address" in result.err

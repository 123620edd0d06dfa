"""The operator's poster: the WiFi code's text, the page's address, the QR files, the HTML page."""

from __future__ import annotations

import asyncio
import base64
import html.parser
import random
import socket
import struct
import zlib
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import pytest
import segno
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.web.operator import set_passphrase
from meshnode.web.poster import (
    WORDS,
    Poster,
    PosterSettings,
    default_page_url,
    poster_html,
    poster_text,
    qr_png,
    qr_svg,
    qr_terminal,
    wifi_join_code,
)
from meshnode.web.server import WebServer, WebSettings, make_app
from tests.fakes import identity

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

HOSTILE = '<script>alert("x")</script>'
PASSPHRASE = "the well is deep and cold"
SVG = "{http://www.w3.org/2000/svg}"


# -- the WiFi code's text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ssid", "password", "code"),
    [
        ("North Village", "choose-a-long-one", "WIFI:T:WPA;S:North Village;P:choose-a-long-one;;"),
        ("Café Ñandú", "", "WIFI:T:nopass;S:Café Ñandú;;"),
        ("a;b", "p,a:s;s", r"WIFI:T:WPA;S:a\;b;P:p\,a\:s\;s;;"),
        ('say "hi"', 'x"y\\z:12', r"WIFI:T:WPA;S:say \"hi\";P:x\"y\\z\:12;;"),
        ("net\\", "ends;with;", r"WIFI:T:WPA;S:net\\;P:ends\;with\;;;"),
        (";;", "", r"WIFI:T:nopass;S:\;\;;;"),
        ("WIFI:S:evil;;", "", r"WIFI:T:nopass;S:WIFI\:S\:evil\;\;;;"),
        (HOSTILE, "12345678", r"WIFI:T:WPA;S:<script>alert(\"x\")</script>;P:12345678;;"),
        ("  spaced  ", "pass word", "WIFI:T:WPA;S:  spaced  ;P:pass word;;"),
    ],
)
def test_the_wifi_code_escapes_what_the_format_reserves(
    ssid: str, password: str, code: str
) -> None:
    assert wifi_join_code(ssid, password) == code


def _read_wifi_code(text: str) -> dict[str, str]:
    """A reader of ``WIFI:`` codes as phones read them: K:value; with backslash escapes."""
    assert text.startswith("WIFI:")
    assert text.endswith(";;")
    fields: dict[str, str] = {}
    i, body = 0, text[len("WIFI:") : -1]
    while i < len(body):
        key, i = body[i], i + 2
        assert body[i - 1] == ":"
        value: list[str] = []
        while body[i] != ";":
            if body[i] == "\\":
                i += 1
            value.append(body[i])
            i += 1
        fields[key] = "".join(value)
        i += 1
    return fields


@given(
    ssid=st.text(min_size=1, max_size=32),
    password=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=63),
)
def test_a_reader_gets_back_the_name_and_password(ssid: str, password: str) -> None:
    fields = _read_wifi_code(wifi_join_code(ssid, password))
    assert fields["S"] == ssid
    assert fields["T"] == ("WPA" if password else "nopass")
    assert fields.get("P") == (password or None)


# -- the page's address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "port", "https", "url"),
    [
        ("village", 80, False, "http://village.local/"),
        ("village", 8080, False, "http://village.local:8080/"),
        ("village.example.org", 80, False, "http://village.local/"),
        ("village", 443, True, "https://village.local/"),
        ("village", 80, True, "https://village.local:80/"),
        ("village", 8443, True, "https://village.local:8443/"),
    ],
)
def test_the_default_address_is_the_mdns_name(
    hostname: str, port: int, https: bool, url: str
) -> None:
    assert default_page_url(hostname, port, https=https) == url
    assert PosterSettings().url(hostname, port, https=https) == url
    override = PosterSettings(page_url="http://10.42.0.1/")
    assert override.url(hostname, port, https=https) == "http://10.42.0.1/"


def test_the_payloads_are_the_wifi_code_and_the_address() -> None:
    settings = PosterSettings(wifi_ssid="North Village", wifi_password="choose-a-long-one")
    poster = settings.poster("North", "http://10.42.0.1/")
    assert poster.payloads() == {
        "wifi": "WIFI:T:WPA;S:North Village;P:choose-a-long-one;;",
        "url": "http://10.42.0.1/",
    }
    bare = PosterSettings().poster("North", "http://north.local/")
    assert bare.payloads() == {"wifi": None, "url": "http://north.local/"}


# -- the QR files ----------------------------------------------------------------------------------


def _png_modules(data: bytes) -> list[list[bool]]:
    """The dark modules of one of our PNGs (1-bit grey, 10 px a module, 4 modules of border)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks: dict[bytes, bytes] = {}
    i = 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        chunks[kind] = chunks.get(kind, b"") + data[i + 8 : i + 8 + length]
        assert (
            zlib.crc32(data[i + 4 : i + 8 + length])
            == struct.unpack(">I", data[i + 8 + length : i + 12 + length])[0]
        )
        i += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, depth, colour) == (height, 1, 0)
    raw, stride = zlib.decompress(chunks[b"IDAT"]), (width + 7) // 8
    rows, prev = [], bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        assert kind in (0, 2)  # none or up: what segno writes
        row = line if kind == 0 else bytes((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        rows.append([not row[x // 8] >> (7 - x % 8) & 1 for x in range(width)])
        prev = row
    size = width // 10
    assert width == size * 10
    return [[rows[r * 10 + 5][c * 10 + 5] for c in range(size)] for r in range(size)]


def _expected_modules(payload: str) -> list[list[bool]]:
    code = segno.make(payload, error="m", micro=False, encoding="utf-8")
    n = len(code.matrix)
    grid = [[False] * (n + 8) for _ in range(n + 8)]
    for r, row in enumerate(code.matrix):
        for c, dark in enumerate(row):
            grid[r + 4][c + 4] = bool(dark)
    return grid


@pytest.mark.parametrize(
    "payload", ["http://a/", "http://a.local/", wifi_join_code("Café;", "12345678")]
)
def test_the_png_is_the_code_of_the_payload_with_its_quiet_zone(payload: str) -> None:
    modules = _png_modules(qr_png(payload))
    assert modules == _expected_modules(payload)
    size = len(modules) - 8
    assert size >= 21  # a full QR code: phones do not read Micro QR
    assert size % 4 == 1
    assert not any(modules[0])
    assert not any(modules[-1])
    assert modules != _expected_modules(payload + "x")  # the check can tell codes apart


def test_the_svg_is_an_svg_of_the_same_code() -> None:
    payload = "http://village.local:8080/"
    root = ElementTree.fromstring(qr_svg(payload))
    assert root.tag == f"{SVG}svg"
    modules = len(segno.make(payload, error="m", micro=False).matrix)
    assert root.get("width") == str((modules + 8) * 10)
    assert root.find(f".//{SVG}path") is not None


def test_the_terminal_code_is_half_blocks_with_a_quiet_zone() -> None:
    lines = qr_terminal("http://village.local/").splitlines()
    modules = len(segno.make("http://village.local/", error="m", micro=False).matrix) + 8
    assert {len(line) for line in lines} == {modules}
    assert len(lines) == (modules + 1) // 2
    assert set("".join(lines)) <= {" ", "\u2580", "\u2584", "\u2588"}
    assert lines[0] == "\u2588" * modules  # light quiet zone on a dark terminal


def test_the_terminal_poster_writes_out_every_text() -> None:
    poster = Poster(
        box_name="North",
        url="http://10.42.0.1/",
        wifi_ssid="North Village",
        wifi_password="pw12345678",
    )
    text = poster_text(poster)
    for words in (WORDS["wifi.heading"], "North Village", "pw12345678", "http://10.42.0.1/"):
        assert words in text
    open_net = poster_text(Poster(box_name="N", url="http://n.local/", wifi_ssid="Open"))
    assert WORDS["wifi.open"] in open_net
    bare = poster_text(Poster(box_name="N", url="http://n.local/"))
    assert WORDS["wifi.heading"] not in bare
    assert WORDS["page.heading"] in bare


# -- the HTML poster -----------------------------------------------------------------------------


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def test_the_html_poster_escapes_every_text_and_shows_each_code() -> None:
    poster = Poster(
        box_name=HOSTILE,
        url="http://10.42.0.1/?a=<b>",
        wifi_ssid=HOSTILE,
        wifi_password='p"<&>1234',
    )
    page = poster_html(poster)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "style=" not in page
    assert "<style" not in page
    parsed = _parse(page)
    assert {"script", "style"}.isdisjoint(tag for tag, _ in parsed.tags)
    assert ("link", {"rel": "stylesheet", "href": "/static/poster.css"}) in parsed.tags
    text = "".join(parsed.text)
    for shown in (HOSTILE, 'p"<&>1234', "http://10.42.0.1/?a=<b>", WORDS["wifi.heading"]):
        assert shown in text  # written out, as text
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    prefix = "data:image/svg+xml;base64,"
    codes = [base64.b64decode((a["src"] or "").removeprefix(prefix)) for a in images]
    assert codes == [qr_svg(wifi_join_code(HOSTILE, 'p"<&>1234')), qr_svg(poster.url)]
    assert all(a["alt"] for a in images)


def test_a_poster_without_wifi_has_only_the_page() -> None:
    page = poster_html(Poster(box_name="North", url="http://north.local/"))
    assert WORDS["wifi.heading"] not in page
    assert [tag for tag, _ in _parse(page).tags].count("img") == 1


# -- served to the operator ----------------------------------------------------------------------


def _box_node() -> Node:
    return Node(
        identity(1), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
    )


def _serve(
    data: Path, poster: PosterSettings, test: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    set_passphrase(data, PASSPHRASE)

    async def main() -> None:
        app, _ = make_app(
            _box_node(), box_name=HOSTILE, on_change=lambda: None, data_dir=data, poster=poster
        )
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


def test_the_poster_is_for_the_operator_only_and_escapes_the_box_name(tmp_path: Path) -> None:
    settings = PosterSettings(wifi_ssid=HOSTILE, wifi_password="choose-a-long-one")

    async def test(client: TestClient[Any, Any]) -> None:
        refused = await client.get("/api/operator/poster")
        assert refused.status == 401
        assert "<script" not in await refused.text()
        login = await client.post("/api/operator/login", json={"passphrase": PASSPHRASE})
        assert login.status == 200
        answer = await client.get("/api/operator/poster")
        assert answer.status == 200
        assert answer.content_type == "text/html"
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"  # it holds the WiFi password
        page = await answer.text()
        assert "<script" not in page
        assert "<h1>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</h1>" in page
        assert "choose-a-long-one" in page
        # The address is the box's mDNS name on the port the page is served on.
        label = socket.gethostname().split(".")[0]
        url = f"http://{label}.local:{client.port}/"
        assert url in page
        assert qr_svg(url) in [base64.b64decode(s) for s in _srcs(page)]
        style = await client.get("/static/poster.css")
        assert style.status == 200
        assert style.content_type == "text/css"

    _serve(tmp_path, settings, test)


def _srcs(page: str) -> list[str]:
    prefix = "data:image/svg+xml;base64,"
    return [(a["src"] or "").removeprefix(prefix) for tag, a in _parse(page).tags if tag == "img"]


def test_the_configured_address_wins(tmp_path: Path) -> None:
    settings = PosterSettings(page_url="http://10.42.0.1/")

    async def test(client: TestClient[Any, Any]) -> None:
        await client.post("/api/operator/login", json={"passphrase": PASSPHRASE})
        page = await (await client.get("/api/operator/poster")).text()
        assert "http://10.42.0.1/" in page
        assert WORDS["wifi.heading"] not in page
        assert [base64.b64decode(s) for s in _srcs(page)] == [qr_svg("http://10.42.0.1/")]

    _serve(tmp_path, settings, test)


def test_the_daemon_knows_the_address_it_serves_on() -> None:
    async def main() -> tuple[str, int, str]:
        plain = WebServer(
            _box_node(), WebSettings(host="127.0.0.1", port=0), on_change=lambda: None
        )
        fixed = WebSettings(host="127.0.0.1", port=0, poster=PosterSettings(page_url="http://x/"))
        configured = WebServer(_box_node(), fixed, on_change=lambda: None)
        await plain.start()
        await configured.start()
        try:
            port = int(plain.listening[0].rsplit(":", 1)[1])
            return plain.page_url, port, configured.page_url
        finally:
            await plain.close()
            await configured.close()

    url, port, configured = asyncio.run(main())
    assert url == f"http://{socket.gethostname().split('.')[0]}.local:{port}/"
    assert configured == "http://x/"

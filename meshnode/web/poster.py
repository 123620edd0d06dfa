"""The operator's poster for the wall: a QR code that joins the box's WiFi, one of the page.

Only this module imports segno (a pure-Python QR encoder). What a code holds comes from pure
functions (``wifi_join_code``, ``default_page_url``, ``Poster.payloads``), so tests check
the exact text; the drawing is segno's. The WiFi code is the ``WIFI:`` text that Android
and iOS cameras read (ZXing's format): ``WIFI:T:WPA;S:<ssid>;P:<password>;;``, or
``WIFI:T:nopass;S:<ssid>;;`` for an open network, where ``\\ ; , : "`` in a value are
escaped with a backslash. Values are never put in double quotes: some readers would keep
the quotes as part of the password. Every code is a full QR code (never Micro QR, which
phones do not read), error correction at least M, its text in UTF-8.

Every word the poster shows is in ``WORDS`` (English; the page's own words are in
``static/i18n/``). The HTML poster is for printing: no script and no inline style, so the
page's Content-Security-Policy holds; its style is ``static/poster.css``.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import segno

__all__ = [
    "WORDS",
    "Poster",
    "PosterSettings",
    "default_page_url",
    "poster_html",
    "poster_text",
    "qr_png",
    "qr_svg",
    "qr_terminal",
    "wifi_join_code",
]

WORDS = {
    "title": "{box}: the village page",
    "lead": "Read and write with your neighbours from your phone, without the internet.",
    "wifi.heading": "Join the village WiFi",
    "wifi.name": "Network",
    "wifi.password": "Password",
    "wifi.open": "none (an open network)",
    "wifi.alt": "QR code that joins the WiFi network {ssid}",
    "page.heading": "Open the page",
    "page.address": "Address",
    "page.alt": "QR code of the address {url}",
    "scan": "Point your phone's camera at a code, or type what is written below it.",
    "print": "Print this page (Ctrl+P, or Print in the browser's menu) and put it on the wall.",
}

_WIFI_SPECIAL = frozenset('\\;,:"')
_SCALE = 10  # pixels per module in SVG and PNG files
_BORDER = 4  # the quiet zone, in modules, that the QR standard asks for


def _escape(value: str) -> str:
    return "".join("\\" + c if c in _WIFI_SPECIAL else c for c in value)


def wifi_join_code(ssid: str, password: str) -> str:
    """The ``WIFI:`` text that joins ``ssid`` (WPA/WPA2/WPA3-personal; open when no password)."""
    if not password:
        return f"WIFI:T:nopass;S:{_escape(ssid)};;"
    return f"WIFI:T:WPA;S:{_escape(ssid)};P:{_escape(password)};;"


def default_page_url(hostname: str, port: int, *, https: bool = False) -> str:
    """``http://HOST.local/`` (the mDNS name avahi answers for), with the port unless usual."""
    label = hostname.split(".", 1)[0] or "localhost"
    scheme, usual = ("https", 443) if https else ("http", 80)
    return f"{scheme}://{label}.local{'' if port == usual else f':{port}'}/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Poster:
    """What the poster shows: the box's name, its WiFi (none when no SSID) and the address."""

    box_name: str
    url: str
    wifi_ssid: str = ""
    wifi_password: str = ""  # empty: an open network

    @property
    def wifi(self) -> str | None:
        """The WiFi code's text, or None when the poster has no WiFi."""
        return wifi_join_code(self.wifi_ssid, self.wifi_password) if self.wifi_ssid else None

    def payloads(self) -> dict[str, str | None]:
        """What each code holds: {"wifi": WIFI:... or None, "url": the page's address}."""
        return {"wifi": self.wifi, "url": self.url}


@dataclass(frozen=True, slots=True, kw_only=True)
class PosterSettings:
    """The operator's poster settings ([web] wifi_ssid, wifi_password, page_url)."""

    wifi_ssid: str = ""
    wifi_password: str = ""
    page_url: str = ""  # empty: default_page_url for where the page is served

    def url(self, hostname: str, port: int, *, https: bool = False) -> str:
        """The address on the poster of a page served on ``port`` of ``hostname``."""
        return self.page_url or default_page_url(hostname, port, https=https)

    def poster(self, box_name: str, url: str) -> Poster:
        """The poster of a box named ``box_name`` whose page is at ``url``."""
        return Poster(
            box_name=box_name, url=url, wifi_ssid=self.wifi_ssid, wifi_password=self.wifi_password
        )


def _code(payload: str) -> segno.QRCode:
    return segno.make(payload, error="m", micro=False, encoding="utf-8")


def qr_svg(payload: str) -> bytes:
    """An SVG file of the QR code of ``payload`` (black on white)."""
    out = io.BytesIO()
    _code(payload).save(out, kind="svg", scale=_SCALE, border=_BORDER, dark="#000", light="#fff")
    return out.getvalue()


def qr_png(payload: str) -> bytes:
    """A PNG file of the QR code of ``payload`` (black on white)."""
    out = io.BytesIO()
    _code(payload).save(out, kind="png", scale=_SCALE, border=_BORDER, dark="#000", light="#fff")
    return out.getvalue()


def qr_terminal(payload: str) -> str:
    """The QR code of ``payload`` in half blocks, light on a dark terminal, quiet zone included."""
    out = io.StringIO()
    _code(payload).terminal(out=out, compact=True, border=_BORDER)
    return out.getvalue()


def poster_text(poster: Poster) -> str:
    """The poster for a terminal: each code, then its words written out."""
    parts: list[str] = []
    if poster.wifi is not None:
        password = poster.wifi_password or WORDS["wifi.open"]
        parts += [WORDS["wifi.heading"], qr_terminal(poster.wifi)]
        parts += [f"{WORDS['wifi.name']}: {poster.wifi_ssid}"]
        parts += [f"{WORDS['wifi.password']}: {password}", ""]
    parts += [WORDS["page.heading"], qr_terminal(poster.url)]
    parts += [f"{WORDS['page.address']}: {poster.url}"]
    return "\n".join(parts) + "\n"


def _img(payload: str, alt: str) -> str:
    data = base64.b64encode(qr_svg(payload)).decode("ascii")
    return f'<img class="qr" src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt)}">'


def _wifi_section(poster: Poster, code: str) -> list[str]:
    e = html.escape
    password = e(poster.wifi_password) if poster.wifi_password else e(WORDS["wifi.open"])
    kind = "value" if poster.wifi_password else "open"
    return [
        '<section class="step">',
        f"<h2>{e(WORDS['wifi.heading'])}</h2>",
        _img(code, WORDS["wifi.alt"].format(ssid=poster.wifi_ssid)),
        "<dl>",
        f'<dt>{e(WORDS["wifi.name"])}</dt><dd class="value">{e(poster.wifi_ssid)}</dd>',
        f'<dt>{e(WORDS["wifi.password"])}</dt><dd class="{kind}">{password}</dd>',
        "</dl>",
        "</section>",
    ]


def poster_html(poster: Poster) -> str:
    """The printable poster: a whole HTML document, every text escaped, style in poster.css."""
    e = html.escape
    title = WORDS["title"].format(box=poster.box_name)
    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        '<link rel="stylesheet" href="/static/poster.css">',
        "</head>",
        "<body>",
        f'<p class="screen-only">{e(WORDS["print"])}</p>',
        '<main class="poster">',
        f"<h1>{e(poster.box_name)}</h1>",
        f'<p class="lead">{e(WORDS["lead"])}</p>',
    ]
    if poster.wifi is not None:
        lines += _wifi_section(poster, poster.wifi)
    lines += [
        '<section class="step">',
        f"<h2>{e(WORDS['page.heading'])}</h2>",
        _img(poster.url, WORDS["page.alt"].format(url=poster.url)),
        "<dl>",
        f'<dt>{e(WORDS["page.address"])}</dt><dd class="value">{e(poster.url)}</dd>',
        "</dl>",
        "</section>",
        f'<p class="scan">{e(WORDS["scan"])}</p>',
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"

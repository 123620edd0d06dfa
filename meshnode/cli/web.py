"""``meshnode web``: the village page's operator settings, and its poster's QR codes."""

from __future__ import annotations

import argparse
import getpass
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.cli.context import emit_json
from meshnode.daemon.control import DaemonError, find_daemon
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.host.address import parse_host_port
from meshnode.store.files import write_atomically
from meshnode.web.operator import MIN_PASSPHRASE_CHARS, set_passphrase
from meshnode.web.poster import PosterSettings, poster_text, qr_png, qr_svg

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.cli.context import Context
    from meshnode.web.poster import Poster

__all__ = ["add_web_commands"]

_URL = re.compile(r"https?://[^\s/?#]+\S*")
_QR_HELP = """\
The poster's QR codes: one that joins the box's WiFi ([web] wifi_ssid and wifi_password;
none when wifi_ssid is empty) and one of the page's address, each with its words written
out. The address is --url, else [web] page_url, else the running daemon's page, else
http://HOSTNAME.local:PORT/ for the port of [web] listen. The page's operator section
shows the same poster, ready to print.

--svg FILE and --png FILE write the page's code to FILE and the WiFi's code beside it,
with -wifi before the suffix: --png poster.png writes poster.png and poster-wifi.png.
"""


def add_web_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``web passphrase`` and ``web qr``."""
    web = sub.add_parser("web", help="the village page's operator settings")
    verbs = web.add_subparsers(dest="web_command", metavar="VERB", required=True)
    p = verbs.add_parser(
        "passphrase",
        help="set the operator's passphrase (read twice from the terminal, or once from stdin)",
    )
    p.set_defaults(func=cmd_web_passphrase)
    q = verbs.add_parser(
        "qr",
        help="print the poster's QR codes (WiFi and page) or write them as SVG or PNG",
        description=_QR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--url", type=_url_arg, help="the page's address on the poster")
    q.add_argument("--svg", type=Path, metavar="FILE", help="write the codes as SVG (above)")
    q.add_argument("--png", type=Path, metavar="FILE", help="write the codes as PNG (above)")
    q.add_argument("--json", action="store_true", help='print {"wifi": TEXT or null, "url": URL}')
    q.set_defaults(func=cmd_web_qr)


def cmd_web_passphrase(ctx: Context, args: argparse.Namespace) -> int:
    """Store the operator passphrase's argon2id hash in the data dir."""
    del args
    if sys.stdin.isatty():
        passphrase = getpass.getpass(f"operator passphrase (at least {MIN_PASSPHRASE_CHARS}): ")
        if getpass.getpass("again: ") != passphrase:
            raise MeshnodeError("the two passphrases differ; nothing was changed")
    else:
        passphrase = sys.stdin.readline().rstrip("\r\n")
    path = set_passphrase(ctx.data_dir, passphrase)
    print(f"operator passphrase set ({path}); log in on the page's operator section")
    return 0


def _url_arg(text: str) -> str:
    """argparse type for --url: an http:// or https:// address without spaces."""
    if not _URL.fullmatch(text) or not text.isprintable():
        raise argparse.ArgumentTypeError(f"not an http:// or https:// address: {text!r}")
    return text


def _daemon_page_url(ctx: Context) -> str | None:
    """The address the running daemon serves its page on, if one answers."""
    client = find_daemon(ctx.control_path())
    if client is None:
        return None
    try:
        daemon = client.call("status").get("daemon")
    except DaemonError:
        return None
    url = daemon.get("page_url") if isinstance(daemon, dict) else None
    return url if isinstance(url, str) and url else None


def _page_url(ctx: Context, url: str | None) -> str:
    """--url, else [web] page_url, else the running daemon's page, else from [web] listen."""
    web = ctx.config.web
    found = url or web.page_url or _daemon_page_url(ctx)
    if found:
        return found
    try:
        _, port = parse_host_port(web.listen, any_port=True)
    except DecodeError as exc:
        raise MeshnodeError(f"web.listen: {exc}") from None
    return PosterSettings().url(socket.gethostname(), port, https=bool(web.tls_cert))


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise MeshnodeError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_codes(poster: Poster, args: argparse.Namespace) -> list[Path]:
    """Each file asked for: the page's code at FILE, the WiFi's at FILE-wifi."""
    written: list[Path] = []
    formats: list[tuple[Path | None, Callable[[str], bytes]]] = [
        (args.svg, qr_svg),
        (args.png, qr_png),
    ]
    for path, draw in formats:
        if path is None:
            continue
        _write(path, draw(poster.url))
        written.append(path)
        if poster.wifi is not None:
            wifi_path = path.with_name(f"{path.stem}-wifi{path.suffix}")
            _write(wifi_path, draw(poster.wifi))
            written.append(wifi_path)
    return written


def cmd_web_qr(ctx: Context, args: argparse.Namespace) -> int:
    """Print the poster's QR codes with their words, or write them to files."""
    web = ctx.config.web
    settings = PosterSettings(
        wifi_ssid=web.wifi_ssid, wifi_password=web.wifi_password, page_url=web.page_url
    )
    poster = settings.poster(web.box_name or socket.gethostname(), _page_url(ctx, args.url))
    written = _write_codes(poster, args)
    if args.json:
        emit_json(poster.payloads())
    elif written:
        for path in written:
            print(f"wrote {path}")
    else:
        print(poster_text(poster), end="")
    return 0

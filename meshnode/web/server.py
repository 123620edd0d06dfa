"""The web server in the daemon's event loop: static page, JSON API, security headers.

Only this room imports the HTTP server (aiohttp). The page's files ship in ``static/``
inside the package: nothing comes from another origin, and the Content-Security-Policy
says so to the browser, so text in an entry can never become a script.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from meshnode.errors import LinkError
from meshnode.host.address import format_host_port
from meshnode.web.api import MAX_BODY_BYTES, Box, routes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from meshnode.core.node import Node

__all__ = ["STATIC", "WebServer", "WebSettings", "make_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """Where the page listens and what it calls the box."""

    host: str = "0.0.0.0"
    port: int = 8080
    box_name: str = ""
    fd: int | None = None  # a listening socket systemd passed (meshnode-web.socket)
    data_dir: Path | None = None  # where the operator's passphrase and log live


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def load_assets(folder: Path = STATIC) -> dict[str, _Asset]:
    """Every regular file of the page (no links followed), read and compressed once."""
    assets: dict[str, _Asset] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        body = path.read_bytes()
        kind = _TYPES.get(path.suffix, "text/plain; charset=utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        assets[path.relative_to(folder).as_posix()] = _Asset(body, gzipped, kind, etag)
    return assets


def _serve(asset: _Asset, request: web.Request, cache: str) -> web.Response:
    headers = {"Cache-Control": cache, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(asset.gzipped) < len(body):
        headers["Content-Encoding"] = "gzip"
        body = asset.gzipped
    response = web.Response(body=body, headers=headers)
    response.headers["Content-Type"] = asset.content_type
    return response


def _static_routes(app: web.Application) -> None:
    assets = load_assets()

    async def index(request: web.Request) -> web.Response:
        return _serve(assets["index.html"], request, "no-cache")

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(text="no such file")
        return _serve(asset, request, "no-cache")

    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)


def make_app(
    node: Node,
    *,
    box_name: str,
    on_change: Callable[[], None],
    data_dir: Path | None = None,
) -> tuple[web.Application, Box]:
    """The aiohttp application for ``node``, and the state its handlers share."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_security_headers])
    box = Box(node, name=box_name, on_change=on_change, data_dir=data_dir)
    routes(app, box)
    _static_routes(app)
    return app, box


class WebServer:
    """Serves the page for ``node`` until closed; starts listening in ``start``."""

    def __init__(self, node: Node, settings: WebSettings, *, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.app, self.box = make_app(
            node, box_name=settings.box_name, on_change=on_change, data_dir=settings.data_dir
        )
        node.add_append_listener(self.box.hub.entry_stored)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.listening: list[str] = []

    async def start(self) -> None:
        """Listen on the configured address; LinkError when it cannot."""
        s = self.settings
        await self._runner.setup()
        site: web.BaseSite
        if s.fd is not None:
            sock = socket.socket(fileno=s.fd)
            site = web.SockSite(self._runner, sock, shutdown_timeout=1.0)
        else:
            site = web.TCPSite(self._runner, s.host, s.port, shutdown_timeout=1.0)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            where = format_host_port(s.host, s.port)
            raise LinkError(f"cannot serve the page on {where}: {exc.strerror or exc}") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.listening = [
            format_host_port(str(x.getsockname()[0]), int(x.getsockname()[1])) for x in sockets
        ]
        log.info("page on %s", ", ".join(f"http://{a}/" for a in self.listening))

    async def close(self) -> None:
        """End every event stream and stop serving."""
        self.box.hub.close_all()
        await self._runner.cleanup()

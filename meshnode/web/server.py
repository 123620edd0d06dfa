"""The web server in the daemon's event loop: static page, JSON API, security headers.

Only this room imports the HTTP server (aiohttp). The page's files ship in ``static/``
inside the package: nothing comes from another origin, and the Content-Security-Policy
says so to the browser, so text in an entry can never become a script. With a certificate
and key (a community's own CA) the page is served over HTTPS, where it is a secure context
and its service worker (``/sw.js``) keeps the page for when no box is in reach.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from meshnode.errors import LinkError
from meshnode.host.address import format_host_port
from meshnode.web.api import MAX_BODY_BYTES, Box, routes
from meshnode.web.poster import PosterSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from meshnode.core.node import Node

__all__ = ["STATIC", "WebServer", "WebSettings", "make_app", "tls_context"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
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
    tls_cert: Path | None = None  # HTTPS: PEM certificate chain; with tls_key, or neither
    tls_key: Path | None = None  # HTTPS: its unencrypted PEM private key
    poster: PosterSettings = field(default_factory=PosterSettings)  # WiFi and page address


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

    async def service_worker(request: web.Request) -> web.Response:
        # Served from the root so that its scope is the whole page (a worker controls only
        # the paths under its own folder); no-cache, so a new box's worker is seen at once.
        return _serve(assets["sw.js"], request, "no-cache")

    app.router.add_get("/", index)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_get("/static/{path:.+}", static)


def make_app(
    node: Node,
    *,
    box_name: str,
    on_change: Callable[[], None],
    data_dir: Path | None = None,
    poster: PosterSettings | None = None,
) -> tuple[web.Application, Box]:
    """The aiohttp application for ``node``, and the state its handlers share."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_security_headers])
    box = Box(node, name=box_name, on_change=on_change, data_dir=data_dir, poster=poster)
    routes(app, box)
    _static_routes(app)
    return app, box


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for HTTPS (TLS 1.2 or later); LinkError naming a file it cannot use."""
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise LinkError(
                f"cannot read the page's TLS {what} {path}: {exc.strerror or exc}"
            ) from None

    def encrypted() -> bytes:  # asked only for an encrypted key: never prompt on a terminal
        raise LinkError(f"the page's TLS key {key} is encrypted: meshnode needs it unencrypted")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=encrypted)
    except ssl.SSLError as exc:
        why = exc.reason or "not PEM"
        raise LinkError(
            f"cannot use the page's TLS certificate {cert} with the key {key} ({why}): "
            "both must be PEM, the key unencrypted and the certificate's own"
        ) from None
    return context


class WebServer:
    """Serves the page for ``node`` until closed; starts listening in ``start``."""

    def __init__(self, node: Node, settings: WebSettings, *, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.app, self.box = make_app(
            node,
            box_name=settings.box_name,
            on_change=on_change,
            data_dir=settings.data_dir,
            poster=settings.poster,
        )
        node.add_append_listener(self.box.hub.entry_stored)
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        self.listening: list[str] = []
        self.page_url = ""  # the address on the poster, once listening

    async def start(self) -> None:
        """Listen on the configured address; LinkError when it cannot."""
        s = self.settings
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = tls_context(s.tls_cert, s.tls_key)
        await self._runner.setup()
        site: web.BaseSite
        if s.fd is not None:
            sock = socket.socket(fileno=s.fd)
            site = web.SockSite(self._runner, sock, ssl_context=tls)
        else:
            site = web.TCPSite(self._runner, s.host, s.port, ssl_context=tls)
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
        scheme = "https" if tls is not None else "http"
        log.info("page on %s", ", ".join(f"{scheme}://{a}/" for a in self.listening))
        port = int(sockets[0].getsockname()[1]) if sockets else s.port
        self.page_url = s.poster.url(socket.gethostname(), port, https=tls is not None)

    async def close(self) -> None:
        """End every event stream and stop serving."""
        self.box.hub.close_all()
        await self._runner.cleanup()

"""HTTPS for the page ([web] tls_cert, tls_key), and the service worker it allows."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.errors import ConfigError, LinkError
from meshnode.host.config import parse_config
from meshnode.host.datadir import config_file_path
from meshnode.links.discovery import HTTP_SERVICE_TYPE, HTTPS_SERVICE_TYPE, MdnsDiscovery
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.web.operator import set_passphrase
from meshnode.web.server import STATIC, WebServer, WebSettings, make_app
from tests.daemons import daemon_pool, free_port
from tests.fakes import identity
from tests.web.conftest import self_signed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BOX = identity(1)
PASSPHRASE = "the well is deep and cold"


def make_box() -> Node:
    return Node(BOX, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))


# -- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("web", "missing"),
    [({"tls_cert": "cert.pem"}, "web.tls_key"), ({"tls_key": "key.pem"}, "web.tls_cert")],
)
def test_https_takes_both_a_certificate_and_a_key(web: dict[str, object], missing: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(missing)}: is required") as caught:
        parse_config({"web": web})
    assert caught.value.key == missing


def test_tls_paths_are_taken_from_the_config_files_folder() -> None:
    text = '[web]\ntls_cert = "tls/cert.pem"\ntls_key = "/etc/ssl/box.key"\n'
    config = parse_config(text, "/etc/meshnode/meshnode.toml")
    assert config.web.tls_cert == "tls/cert.pem"
    assert config_file_path(config, config.web.tls_cert) == Path("/etc/meshnode/tls/cert.pem")
    assert config_file_path(config, config.web.tls_key) == Path("/etc/ssl/box.key")
    assert parse_config("").web.tls_cert == parse_config("").web.tls_key == ""


# -- the service worker ------------------------------------------------------------------


def test_the_service_worker_is_served_from_the_root_under_the_strict_policy() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        worker = await client.get("/sw.js")
        assert worker.status == 200
        assert worker.headers["Content-Type"].startswith("text/javascript")
        assert worker.headers["Cache-Control"] == "no-cache"
        policy = worker.headers["Content-Security-Policy"]
        assert "worker-src 'self'" in policy
        assert "script-src 'self'" in policy
        assert "caches.open" in await worker.text()
        page = await client.get("/")
        assert "worker-src 'self'" in page.headers["Content-Security-Policy"]

    async def main() -> None:
        app, _ = make_app(make_box(), box_name="Box", on_change=lambda: None)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 20)

    asyncio.run(main())


_IMPORT = re.compile(r'(?:\bfrom\s*|\bimport\s*\(?\s*)"(\.{1,2}/[^"]+)"')


def _page_files() -> set[str]:
    """The page's own files: index.html's, every module app.js imports (also lazily), words."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    found = set(re.findall(r'(?:href|src)="/static/([^"]+)"', html))
    todo = [name for name in found if name.endswith(".js")]
    while todo:
        name = todo.pop()
        text = (STATIC / name).read_text(encoding="utf-8")
        for relative in _IMPORT.findall(text):
            target = (STATIC / name).parent.joinpath(relative).resolve().relative_to(STATIC)
            if target.as_posix() not in found:
                found.add(target.as_posix())
                todo.append(target.as_posix())
    found.update(p.relative_to(STATIC).as_posix() for p in (STATIC / "i18n").glob("*.json"))
    return found


def test_the_service_worker_keeps_exactly_the_files_the_page_loads() -> None:
    # A missing file would keep the page from opening without the box; a file that is gone
    # would fail the worker's install (cache.addAll is all or nothing).
    worker = (STATIC / "sw.js").read_text(encoding="utf-8")
    shell_text = re.search(r"const SHELL = \[(.*?)\];", worker, re.DOTALL)
    assert shell_text is not None
    shell = json.loads(f"[{shell_text.group(1).rstrip().rstrip(',')}]")
    assert len(shell) == len(set(shell))
    assert set(shell) == {"/"} | {f"/static/{name}" for name in _page_files()}
    assert "backup.js" in _page_files()  # imported only when the backup is opened
    assert all((STATIC / name.removeprefix("/static/")).is_file() for name in shell[1:])


# -- the server over HTTPS ---------------------------------------------------------------


def run_tls(
    data: Path,
    cert: Path,
    key: Path,
    test: Callable[[aiohttp.ClientSession, str], Awaitable[None]],
) -> list[str]:
    """Run ``test`` with a session that trusts ``cert`` and the page's https base URL."""

    async def main() -> list[str]:
        settings = WebSettings(
            host="127.0.0.1", port=0, box_name="Box", data_dir=data, tls_cert=cert, tls_key=key
        )
        server = WebServer(make_box(), settings, on_change=lambda: None)
        await server.start()
        try:
            trust = ssl.create_default_context(cafile=str(cert))
            connector = aiohttp.TCPConnector(ssl=trust)
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.wait_for(test(session, f"https://{server.listening[0]}"), 20)
        finally:
            await server.close()
        return server.listening

    return asyncio.run(main())


def test_the_page_answers_over_https_and_the_operators_cookie_is_secure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    set_passphrase(tmp_path, PASSPHRASE)

    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(f"{base}/") as page:
            assert page.status == 200
            assert "Strict-Transport-Security" not in page.headers  # a community CA may go
            assert "worker-src 'self'" in page.headers["Content-Security-Policy"]
        async with session.get(f"{base}/sw.js") as worker:
            assert worker.status == 200
        login = {"passphrase": PASSPHRASE}
        async with session.post(f"{base}/api/operator/login", json=login) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"]
            assert "Secure" in cookie
            assert "HttpOnly" in cookie
        plain = base.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):  # plain HTTP gets no page on the TLS port
            async with aiohttp.ClientSession() as insecure, insecure.get(f"{plain}/") as r:
                await r.read()

    with caplog.at_level(logging.INFO, logger="meshnode.web.server"):
        listening = run_tls(tmp_path, cert, key, test)
    assert f"page on https://{listening[0]}/" in caplog.text


def test_over_plain_http_the_operators_cookie_is_not_marked_secure(tmp_path: Path) -> None:
    set_passphrase(tmp_path, PASSPHRASE)

    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/operator/login", json={"passphrase": PASSPHRASE})
        assert response.status == 200
        assert "Secure" not in response.headers["Set-Cookie"]

    async def main() -> None:
        app, _ = make_app(make_box(), box_name="Box", on_change=lambda: None, data_dir=tmp_path)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 20)

    asyncio.run(main())


def _start_error(settings: WebSettings) -> str:
    async def main() -> str:
        server = WebServer(make_box(), settings, on_change=lambda: None)
        with pytest.raises(LinkError) as caught:
            await server.start()
        await server.close()
        return str(caught.value)

    return asyncio.run(main())


def test_a_certificate_or_key_it_cannot_use_is_a_clear_error_naming_the_file(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed(other, "localhost")
    base = WebSettings(host="127.0.0.1", port=0, tls_cert=cert, tls_key=key)
    missing = tmp_path / "no-such.key"

    message = _start_error(dataclasses.replace(base, tls_key=missing))
    assert message == f"cannot read the page's TLS key {missing}: No such file or directory"
    message = _start_error(dataclasses.replace(base, tls_cert=tmp_path))
    assert message == f"cannot read the page's TLS certificate {tmp_path}: Is a directory"
    message = _start_error(dataclasses.replace(base, tls_key=other_key))
    assert f"certificate {cert} with the key {other_key} (KEY_VALUES_MISMATCH)" in message
    message = _start_error(dataclasses.replace(base, tls_cert=key, tls_key=cert))
    assert f"certificate {key} with the key {cert} (not PEM)" in message


def test_an_encrypted_key_is_refused_without_asking_for_its_password(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    locked = tmp_path / "locked.pem"
    command = ["openssl", "pkey", "-in", str(key), "-out", str(locked)]
    subprocess.run(
        [*command, "-aes256", "-passout", "pass:secret"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    message = _start_error(WebSettings(host="127.0.0.1", port=0, tls_cert=cert, tls_key=locked))
    assert message == f"the page's TLS key {locked} is encrypted: meshnode needs it unencrypted"


@pytest.mark.integration
def test_the_daemon_stops_with_one_line_naming_a_missing_key(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path, "localhost")
    with daemon_pool() as pool:
        data, _ = pool.init("a")
        config = pool.root / "https.toml"
        config.write_text(f'[web]\ntls_cert = "{cert}"\ntls_key = "missing.pem"\n')
        listen = f"127.0.0.1:{free_port()}"
        done = pool.cli(
            data, "run", "--no-mdns", "--listen", listen, "--web", "127.0.0.1:0",
            pre=("--config", str(config)),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot read the page's TLS key {pool.root / 'missing.pem'}" in done.stderr
    assert "Traceback" not in done.stderr


# -- mDNS --------------------------------------------------------------------------------


@pytest.mark.parametrize(("tls", "kind"), [(False, HTTP_SERVICE_TYPE), (True, HTTPS_SERVICE_TYPE)])
def test_the_page_is_announced_as_https_when_it_is_served_over_tls(tls: bool, kind: str) -> None:
    discovery = MdnsDiscovery(
        feed_id=BOX.feed_id,
        network_key=DEFAULT_NETWORK_KEY,
        port=7001,
        on_seen=lambda seen: None,
        interfaces=["127.0.0.1"],
        page=("Village", 443),
        page_tls=tls,
    )
    info = discovery._page_info()
    assert info is not None
    assert info.type == kind
    assert info.name == f"Village.{kind}"
    assert info.port == 443

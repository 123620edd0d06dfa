"""The village page served by a real `meshnode run`: a phone's entry reaches the box and beyond."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from meshnode.codec.message import ContentType, create_entry
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from meshnode.types import Seq
from tests.daemons import DaemonPool, daemon_pool, free_port, wait_for
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemons import Daemon

pytestmark = pytest.mark.integration

PHONE = identity(42)
_PAGE = re.compile(r"page on http://(127\.0\.0\.1:\d+)/")


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def page_address(daemon: Daemon) -> str:
    """HOST:PORT of the daemon's page, from its log."""
    return wait_for("the page to listen", lambda: _found(daemon.stderr()), 10.0)


def _found(log: str) -> str | None:
    match = _PAGE.search(log)
    return match.group(1) if match else None


def http(url: str, data: bytes | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_post_from_a_phone_is_kept_by_the_box_and_synced_to_another(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    daemon_a = pool.start("a")
    pool.start("b", "--peer", daemon_a.address)
    pool.ok(b, "follow", a_id)
    page = page_address(daemon_a)
    status, info = http(f"http://{page}/api/box")
    assert status == 200
    assert info["id"] == a_id
    entry = create_entry(
        PHONE,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=TS_MS,
        content_type=ContentType.POST,
        content=b"posted from a phone",
    )
    status, answer = http(f"http://{page}/api/entries", entry.raw)
    assert (status, answer["outcome"]) == (201, "added")
    phone_id = format_feed_id(PHONE.feed_id)
    assert [e["text"] for e in pool.feed(a, phone_id)] == ["posted from a phone"]
    # B follows the box, and the box follows the people who post through its page.
    got = wait_for("B to hold the phone's post", lambda: pool.feed(b, phone_id) or None, 30.0)
    assert got[0]["text"] == "posted from a phone"


def test_no_web_serves_no_page(pool: DaemonPool) -> None:
    pool.init("a")
    daemon = pool.start("a", "--no-web")
    assert _found(daemon.stderr()) is None
    assert "page on" not in daemon.stderr()


def test_the_page_serves_on_a_socket_that_systemd_passes(pool: DaemonPool) -> None:
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (apt-get install systemd)")
    a, a_id = pool.init("a")
    port = free_port()
    command = [tool, "-l", f"127.0.0.1:{port}", "--fdname=web", sys.executable, "-m", "meshnode"]
    command += ["--data", str(a), "run", "--no-mdns", "--listen", "127.0.0.1:0"]
    log = pool.root / "activated.stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, env=pool.env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        status, info = wait_for("the passed socket to serve", lambda: _box(port), 20.0)
        assert (status, info["id"]) == (200, a_id)
        assert f"page on http://127.0.0.1:{port}/" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()


def _box(port: int) -> tuple[int, dict[str, object]] | None:
    try:
        return http(f"http://127.0.0.1:{port}/api/box")
    except (urllib.error.URLError, ConnectionError):
        return None

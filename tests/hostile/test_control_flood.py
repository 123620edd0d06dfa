"""Floods of the control socket: connections past the cap, silent ones, oversized requests.

The socket is mode 0660 (group meshnode), so the stranger here is a local process. The
server is run in this process on a real unix socket; a real ``meshnode run``, limited to
the 1,024 file descriptors systemd gives a service, takes 1,100 held connections (slow).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import control as control_module
from meshnode.daemon.control import ControlClient, ControlServer, DaemonError
from meshnode.host.jobs import Job
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.daemons import daemon_pool, wait_for
from tests.fakes import identity

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

_CAP = 4  # the cap, made small so that a test fills it with a few connections


@asynccontextmanager
async def control_server(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[ControlServer, threading.Event]]:
    """A ControlServer on a fresh socket, with a ``block`` stream that waits for the event."""
    monkeypatch.setattr(control_module, "_MAX_CONNECTIONS", _CAP)
    node = Node(
        identity(1), network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1)
    )
    folder = Path(tempfile.mkdtemp(prefix="mn"))
    server = ControlServer(node, extra={}, after=lambda: None, path=folder / "control.sock")
    release = threading.Event()

    def block(node: Node, args: Mapping[str, object]) -> Iterator[dict[str, object] | Job[Any]]:
        yield Job(lambda: release.wait(10))
        yield {"released": True}

    server.streams["block"] = block
    listening = await server.start()
    try:
        yield server, release
    finally:
        release.set()
        listening.close()
        await listening.wait_closed()
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


async def request(path: Path, cmd: str) -> asyncio.StreamReader:
    """Open a connection, send ``cmd``, return the reader of its answer."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(json.dumps({"cmd": cmd, "args": {}}).encode() + b"\n")
    await writer.drain()
    _OPEN.append(writer)
    return reader


_OPEN: list[asyncio.StreamWriter] = []


async def answer(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(10):
        line = await reader.readline()
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - state changes in other tasks
            await asyncio.sleep(0.005)


def close_all() -> None:
    for writer in _OPEN:
        writer.close()
    _OPEN.clear()


def test_one_past_the_cap_while_all_are_busy_is_refused_cleanly_and_the_rest_finish(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with control_server(monkeypatch) as (server, release):
            busy = [await request(server.path, "block") for _ in range(_CAP)]
            await until(lambda: server.connections == _CAP and not server._waiting)
            refused = await answer(await request(server.path, "status"))
            assert refused == {
                "ok": False,
                "error": f"the daemon is busy: {_CAP} control connections open; try again",
            }
            assert server.connections == _CAP
            release.set()
            for reader in busy:
                lines = [await answer(reader) for _ in range(2)]
                assert lines[0] == {"ok": True, "item": {"released": True}}
            await until(lambda: server.connections == 0)
            status = await answer(await request(server.path, "status"))  # serving again
            assert status["ok"] is True
        close_all()

    asyncio.run(scenario())
    assert "refusing a control connection: 4 open" in caplog.text


def test_silent_connections_give_way_to_a_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with control_server(monkeypatch) as (server, _):
            silent = [await asyncio.open_unix_connection(str(server.path)) for _ in range(50)]
            await until(lambda: server.dropped >= 50 - _CAP)
            assert server.connections <= _CAP + 1
            status = await answer(await request(server.path, "status"))
            assert status["ok"] is True
            for reader, writer in silent[: 50 - _CAP]:  # the oldest were closed
                async with asyncio.timeout(5):
                    assert await reader.read() == b""
                writer.close()
            for _, writer in silent[50 - _CAP :]:
                writer.close()
        close_all()

    asyncio.run(scenario())
    assert "closing the oldest control connection still silent" in caplog.text


def test_requests_too_large_for_the_budget_get_an_error_not_the_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control_module, "_MAX_REQUEST_BYTES", 1 << 20)
    monkeypatch.setattr(control_module, "_MAX_BUFFERED_BYTES", 3 << 19)

    async def scenario() -> None:
        async with control_server(monkeypatch) as (server, _):
            big = await asyncio.open_unix_connection(str(server.path))
            big[1].write(b'{"cmd": "status", "pad": "' + b"x" * (1 << 20))
            assert await answer(big[0]) == {"ok": False, "error": "request over 1 MiB"}
            # two half-sent requests of 0.75 MiB: the second is past what may be held at once
            first = await asyncio.open_unix_connection(str(server.path))
            first[1].write(b'{"cmd": "status", "pad": "' + b"x" * (3 << 18))
            await until(lambda: server._buffered >= 3 << 18)
            second = await asyncio.open_unix_connection(str(server.path))
            second[1].write(b'{"cmd": "status", "pad": "' + b"x" * (3 << 18))
            refusal = await answer(second[0])
            assert refusal["error"] == "the daemon is busy reading other requests; try again"
            first[1].write(b'"}\n')
            assert (await answer(first[0]))["ok"] is True
            await until(lambda: server._buffered == 0)
            for _, writer in (big, first, second):
                writer.close()

    asyncio.run(scenario())


def test_the_client_says_busy_as_an_error() -> None:
    folder = Path(tempfile.mkdtemp(prefix="mn"))
    path = folder / "control.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(path))
            listener.listen()

            def refuse() -> None:
                conn, _ = listener.accept()
                busy = "the daemon is busy: 32 control connections open; try again"
                conn.sendall(json.dumps({"ok": False, "error": busy}).encode() + b"\n")
                conn.close()

            thread = threading.Thread(target=refuse)
            thread.start()
            with pytest.raises(DaemonError, match="the daemon is busy"):
                ControlClient(path).call("status")
            thread.join()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- a real `meshnode run` under the file limit systemd gives it ------------------------------


def _open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_daemon_held_by_1100_control_connections_keeps_serving() -> None:
    with daemon_pool() as pool:
        data, _ = pool.init("a")
        daemon = pool.start("a", wrap=("prlimit", "--nofile=1024:1024", "--"))
        sock = data / "control.sock"
        wait_for("the control socket", lambda: sock.exists() or None, 10.0)
        before = _open_fds(daemon.proc.pid)
        held = []
        try:
            for _ in range(1100):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(sock))
                held.append(s)
            # the daemon holds at most its cap of them (and answers a command meanwhile)
            assert pool.ok(data, "post", "still here")
            assert _open_fds(daemon.proc.pid) <= before + control_module._MAX_CONNECTIONS + 8
            status = pool.json(data, "status")
            assert status["daemon"]  # the daemon answered, not a local store
        finally:
            for s in held:
                s.close()
        assert daemon.running()
        assert [e["text"] for e in pool.feed(data) if "text" in e] == ["still here"]
        stderr = daemon.stderr()
        assert "closing the oldest control connection still silent" in stderr
        assert "similar lines suppressed" in stderr or stderr.count("\n") < 100
        assert "Too many open files" not in stderr
        daemon.signal_stop()
        assert daemon.wait_exit() == 0

"""The LAN listener waits for an address that is not on the box yet (issue 15, point 4).

192.0.2.1 (TEST-NET-1) is on no host: only binds are tried, nothing is ever sent to it. The
last test adds it to the loopback of a network namespace and sees the listener bind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon.listener import Listener
from meshnode.daemon.service import Service, ServiceSettings
from meshnode.errors import LinkError
from meshnode.host.sdnotify import Notifier
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import identity
from tests.netns import ip, netns_exec, network_namespace

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration

NOT_HERE = "192.0.2.1"
ROOT = Path(__file__).resolve().parents[2]


async def _ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def test_an_address_not_on_the_box_is_waited_for_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        listener = Listener(_ignore, NOT_HERE, 0, retry_s=(0.01, 0.02))
        assert await listener.open() is False
        assert listener.waiting
        assert listener.addresses() == []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await listener.wait_open()  # many binds tried meanwhile
        listener.close()

    with caplog.at_level(logging.INFO, logger="meshnode.daemon.listener"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{NOT_HERE} is not on this box (yet): waiting for it to listen on {NOT_HERE}:0"
    ]


def test_a_port_in_use_is_still_fatal() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(LinkError, match=f"cannot listen on 127.0.0.1:{port}"):
                await Listener(_ignore, "127.0.0.1", port).open()

    asyncio.run(main())


def _notify_socket(directory: Path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(directory / "notify"))
    receiver.setblocking(False)
    return receiver


def test_the_daemon_is_ready_and_says_it_waits_for_the_address() -> None:
    who = identity(1)
    node = Node(who, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))
    settings = ServiceSettings(listen_host=NOT_HERE, listen_port=7420)
    with tempfile.TemporaryDirectory(prefix="mn") as name, _notify_socket(Path(name)) as sd:
        notifier = Notifier({"NOTIFY_SOCKET": str(Path(name) / "notify")})
        svc = Service(
            node,
            who,
            settings,
            notifier=notifier,
            control_path=Path(name) / "control.sock",
            discovery=None,
        )

        async def main() -> list[str]:
            task = asyncio.create_task(svc.run())
            loop = asyncio.get_running_loop()
            first = (await asyncio.wait_for(loop.sock_recv(sd, 4096), 10)).decode()
            status = svc._status_request(node, {})
            svc.stop()
            await asyncio.wait_for(task, 10)
            return [first, repr(status["daemon"])]

        ready, daemon = asyncio.run(main())
    assert ready.startswith("READY=1\nSTATUS=waiting for 192.0.2.1:7420"), ready
    assert "'waiting_for': '192.0.2.1:7420'" in daemon
    assert "'listening': []" in daemon


_WAITER = """
import asyncio, sys
from meshnode.daemon.listener import Listener

async def ignore(reader, writer):
    writer.close()

async def main():
    listener = Listener(ignore, "192.0.2.1", 7420, retry_s=(0.05, 0.2))
    print("bound" if await listener.open() else "waiting", flush=True)
    await listener.wait_open()
    print("bound", *listener.addresses(), flush=True)
    listener.close()

asyncio.run(asyncio.wait_for(main(), 30))
"""


def _line(process: subprocess.Popen[str], check: Callable[[str], bool]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert check(line), line + (process.stderr.read() if process.stderr else "")
    return line


@pytest.mark.slow
def test_the_listener_binds_once_the_address_appears() -> None:
    with (
        network_namespace("mn-listen") as ns,
        subprocess.Popen(
            netns_exec(ns, sys.executable, "-c", _WAITER),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        ) as process,
    ):
        try:
            _line(process, lambda line: line == "waiting")
            ip("-n", ns, "address", "add", f"{NOT_HERE}/32", "dev", "lo")
            _line(process, lambda line: line == f"bound {NOT_HERE}:7420")
            assert process.wait(10) == 0
        finally:
            process.kill()

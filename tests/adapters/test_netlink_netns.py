"""Interface changes reach discovery from the kernel (rtnetlink), not from polling.

A real `meshnode run` with mDNS in a throwaway network namespace: an address added there is
advertised within seconds, while the fallback poll would first look after a minute.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from typing import TYPE_CHECKING

import pytest

from meshnode.links import netlink
from meshnode.links.netlink import InterfaceWatch
from tests.daemons import daemon_pool, wait_for
from tests.netns import ip, netns_exec, network_namespace

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

NOTICE_S = 10.0  # well under the 60 s fallback poll


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _advertised(stderr: str) -> list[str]:
    """The address lists of every "advertising <service> on [...]" line, in order."""
    return re.findall(r"advertising mn-\S+ on \[([^]]*)\]", stderr)


def test_the_daemon_advertises_an_address_added_after_start(pool: DaemonPool) -> None:
    pool.init("a")
    with network_namespace("mn-nl") as ns:
        ip("-n", ns, "link", "add", "mn-nl0", "type", "veth", "peer", "name", "mn-nl1")
        daemon = pool.start("a", wrap=netns_exec(ns), mdns=True)
        wait_for("the first advertisement", lambda: _advertised(daemon.stderr()) or None, 15)
        assert _advertised(daemon.stderr()) == ["'127.0.0.1'"]  # only lo so far
        ip("-n", ns, "addr", "add", "10.77.0.1/24", "dev", "mn-nl0")
        ip("-n", ns, "link", "set", "mn-nl0", "up")
        wait_for(
            "the new address to be advertised",
            lambda: any("'10.77.0.1'" in a for a in _advertised(daemon.stderr())) or None,
            NOTICE_S,
        )
        assert "looking at the interfaces every" not in daemon.stderr()  # no fallback poll


def _child_sees_address(prefix: str, child: str, address: str) -> list[str]:
    """Run ``child`` in a new namespace; after its first line, add ``address`` to ``lo``.

    Returns the child's first line and the rest of its output, each stripped.
    """

    async def scenario(ns: str) -> list[str]:
        proc = await asyncio.create_subprocess_exec(
            *netns_exec(ns, sys.executable, "-c", child), stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            first = (await proc.stdout.readline()).decode().strip()
            ip("-n", ns, "addr", "add", address, "dev", "lo")
            rest = (await proc.stdout.read()).decode().strip()
            await proc.wait()
        return [first, rest]

    with network_namespace(prefix) as ns:
        return asyncio.run(scenario(ns))


def test_the_watch_wakes_on_a_change_in_its_namespace() -> None:
    # The watch must wake for the address, with no poll due for an hour.
    child = (
        "import asyncio\n"
        "from meshnode.links.netlink import InterfaceWatch\n"
        "async def main():\n"
        "    with InterfaceWatch(poll_s=3600, settle_s=0.05) as watch:\n"
        "        print(watch.source, flush=True)\n"
        "        await asyncio.wait_for(watch.changed(), 10)\n"
        "        print('changed', watch.changes, flush=True)\n"
        "asyncio.run(main())\n"
    )
    source, said = _child_sees_address("mn-nlw", child, "10.78.0.1/24")
    assert source == "netlink"
    assert said.split()[0] == "changed"
    assert int(said.split()[1]) >= 1


def test_the_listener_binds_when_its_address_appears_with_no_retry_due() -> None:
    # An hour between binds: only the kernel's word can make it bind within the test.
    child = (
        "import asyncio\n"
        "from meshnode.daemon.listener import Listener\n"
        "async def ignore(reader, writer):\n"
        "    writer.close()\n"
        "async def main():\n"
        "    listener = Listener(ignore, '192.0.2.7', 7420, retry_s=(3600, 3600))\n"
        "    print('bound' if await listener.open() else 'waiting', flush=True)\n"
        "    await asyncio.wait_for(listener.wait_open(), 10)\n"
        "    print('bound', *listener.addresses(), flush=True)\n"
        "    listener.close()\n"
        "asyncio.run(main())\n"
    )
    said = _child_sees_address("mn-nll", child, "192.0.2.7/32")
    assert said == ["waiting", "bound 192.0.2.7:7420"]


def test_without_netlink_the_watch_polls_slowly_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(socket, "AF_NETLINK")

    async def scenario() -> InterfaceWatch:
        with InterfaceWatch(poll_s=0.01) as watch:
            for _ in range(3):
                await watch.changed()
        return watch

    caplog.set_level(logging.INFO, logger=netlink.__name__)
    watch = asyncio.run(scenario())
    assert watch.source == "poll"
    assert [r.getMessage() for r in caplog.records] == [
        "no netlink here; looking at the interfaces every 0 s"
    ]


def test_a_refused_socket_falls_back_to_polling(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(netlink, "_NETLINK_ROUTE", 99)  # no such netlink family: the kernel refuses

    async def scenario() -> str:
        with InterfaceWatch(poll_s=60) as watch:
            return watch.source

    caplog.set_level(logging.INFO, logger=netlink.__name__)
    assert asyncio.run(scenario()) == "poll"
    assert "netlink refused" in caplog.text
    assert "every 60 s" in caplog.text

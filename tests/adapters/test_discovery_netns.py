"""Real mDNS discovery, inside throwaway network namespaces (never on the host's interfaces)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import identity
from tests.netns import ip, netns_exec, network_namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OTHER_NETWORK_KEY = bytes(range(32))
TEST_TIMEOUT_S = 15.0
WAIT_S = 8.0
STOP_TIMEOUT_S = 5.0

# Runs the given nodes in one process; one JSON line per sighting or discovery log record.
_CHILD = """
import asyncio, json, logging, signal, sys
from meshnode.links.discovery import MdnsDiscovery
from tests.fakes import identity

def emit(**fields):
    print(json.dumps(fields), flush=True)

class Forward(logging.Handler):
    def emit(self, record):
        emit(event="log", msg=record.getMessage())

logging.basicConfig(level=logging.WARNING)
logging.getLogger("meshnode.links.discovery").addHandler(Forward())
logging.getLogger("meshnode.links.discovery").setLevel(logging.DEBUG)

def reporter(name):
    return lambda seen: emit(
        event="seen", node=name, feed=seen.feed_id.hex(), host=seen.host, port=seen.port
    )

async def main(nodes):
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        async with asyncio.TaskGroup() as tasks:
            for n in nodes:
                discovery = MdnsDiscovery(
                    feed_id=identity(n["seed"]).feed_id,
                    network_key=bytes.fromhex(n["network_key"]),
                    port=n["port"],
                    on_seen=reporter(n["name"]),
                    interfaces=n["interfaces"],
                    rescan_s=n["rescan_s"],
                )
                tasks.create_task(discovery.run())
    except asyncio.CancelledError:
        emit(event="stopped")

asyncio.run(main(json.loads(sys.argv[1])))
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    """One MdnsDiscovery to run in a child process."""

    name: str
    seed: int
    port: int
    network_key: str = DEFAULT_NETWORK_KEY.hex()
    interfaces: list[str] | None = None
    rescan_s: float = 0.5

    @property
    def feed(self) -> str:
        """Hex of the node's key, as the child reports it."""
        return identity(self.seed).feed_id.hex()

    @property
    def label(self) -> str:
        """Instance label, as discovery logs name the service."""
        return "mn-" + self.feed[:16]


class _Child:
    """A child process in a namespace, with its JSON lines collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.exited = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, namespace: str, nodes: list[_Node]) -> _Child:
        """Start ``nodes`` in ``namespace``."""
        spec = json.dumps([asdict(n) for n in nodes])
        proc = await asyncio.create_subprocess_exec(
            *netns_exec(namespace, sys.executable, "-c", _CHILD, spec),
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            async with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        async with self._changed:
            self.exited = True
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; fail showing what happened on timeout or exit."""
        try:
            async with asyncio.timeout(WAIT_S), self._changed:
                await self._changed.wait_for(lambda: predicate() or self.exited)
        except TimeoutError:
            pytest.fail(f"not within {WAIT_S} s; the child reported: {self.events}")
        if not predicate():
            pytest.fail(f"child exited early (its stderr is above): {self.events}")

    def seen(self, node: _Node) -> set[tuple[str, str, int]]:
        """(feed, host, port) of every sighting ``node`` reported."""
        return {
            (e["feed"], e["host"], e["port"])
            for e in self.events
            if e["event"] == "seen" and e["node"] == node.name
        }

    def logs(self, *words: str) -> list[str]:
        """Discovery log lines holding every one of ``words``."""
        msgs = [e["msg"] for e in self.events if e["event"] == "log"]
        return [m for m in msgs if all(w in m for w in words)]

    async def stop(self) -> None:
        """SIGTERM (so goodbyes go out), then kill if it hangs."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.proc.wait()
                await self._reader
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            self._reader.cancel()


@contextlib.asynccontextmanager
async def _running(namespace: str, nodes: list[_Node]) -> AsyncIterator[_Child]:
    """A started child, stopped on exit."""
    child = await _Child.start(namespace, nodes)
    try:
        yield child
    finally:
        await child.stop()


def test_two_nodes_see_each_other_and_not_another_network() -> None:
    a = _Node(name="a", seed=1, port=7001, interfaces=["127.0.0.1"])
    b = _Node(name="b", seed=2, port=7002, interfaces=["127.0.0.1"])
    c = _Node(
        name="c", seed=3, port=7003, interfaces=["127.0.0.1"], network_key=OTHER_NETWORK_KEY.hex()
    )

    async def scenario(namespace: str) -> _Child:
        async with asyncio.timeout(TEST_TIMEOUT_S), _running(namespace, [a, b, c]) as child:

            def settled() -> bool:
                # Each saw the other, and each service was resolved and ignored by everyone
                # who must ignore it: c by all three, a and b by themselves and by c.
                return (
                    bool(child.seen(a) and child.seen(b))
                    and len(child.logs(c.label, "ignored")) >= 3
                    and all(len(child.logs(n.label, "ignored")) >= 2 for n in (a, b))
                )

            await child.wait_for(settled)
        return child

    with network_namespace("mn-disc") as namespace:
        child = asyncio.run(scenario(namespace))
    assert child.seen(a) == {(b.feed, "127.0.0.1", b.port)}
    assert child.seen(b) == {(a.feed, "127.0.0.1", a.port)}
    assert child.seen(c) == set()
    assert {"event": "stopped"} in child.events


def test_an_interface_that_comes_up_late_is_used() -> None:
    early = _Node(name="early", seed=2, port=7002)
    late = _Node(name="late", seed=1, port=7001)

    async def scenario(ns_late: str, ns_early: str) -> tuple[_Child, _Child]:
        async with (
            asyncio.timeout(TEST_TIMEOUT_S),
            _running(ns_early, [early]) as early_child,
            _running(ns_late, [late]) as late_child,
        ):
            await late_child.wait_for(lambda: bool(late_child.logs("advertising", late.label)))
            assert late_child.logs("advertising", "['127.0.0.1'] port")  # only lo so far
            ip("-n", ns_late, "addr", "add", "169.254.77.1/24", "dev", "mn-late")
            ip("-n", ns_late, "link", "set", "mn-late", "up")
            await early_child.wait_for(lambda: bool(early_child.seen(early)))
            await late_child.wait_for(lambda: bool(late_child.seen(late)))
        return late_child, early_child

    with network_namespace("mn-late") as ns_late, network_namespace("mn-early") as ns_early:
        veth = ["mn-late", "type", "veth", "peer", "name", "mn-early", "netns", ns_early]
        ip("-n", ns_late, "link", "add", *veth)
        ip("-n", ns_early, "addr", "add", "169.254.77.2/24", "dev", "mn-early")
        ip("-n", ns_early, "link", "set", "mn-early", "up")
        late_child, early_child = asyncio.run(scenario(ns_late, ns_early))
    assert early_child.seen(early) == {(late.feed, "169.254.77.1", late.port)}
    assert late_child.seen(late) == {(early.feed, "169.254.77.2", early.port)}

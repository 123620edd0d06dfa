"""Hostile benchmark: one daemon under each flood a stranger can send, and a friend's sync.

Setup, not timed: daemon A (``meshnode run``, TCP on loopback, a ``serial`` radio on a
pty, the page on) with an empty store. A "friend" is a fresh data dir whose own feed
holds 100 entries; A follows it, the friend's daemon dials A, and the clock runs from
the friend's "listening" line until A's control socket reports all 100 held.

* ``idle_rss_mb``: A's resident memory after it settles, before any attack.
* ``served_peer_ref_s``: a friend's sync with no attack (the median of 3 friends).
* ``attacks``: for each flood below, started and left running while 3 new friends sync,
  one after another: ``rss_mb`` (A's peak resident memory during the attack, goal <= idle
  + 25), ``served_peer_s`` (the median friend's sync meanwhile, goal <= 2 x the
  reference) and
  ``cpu_s`` (A's CPU seconds from the attack's start to the sync's end).

The floods, each from this process:

* ``defines``: throwaway identities, one after another, each saying HELLO and then
  sending DEFINE frames that name feeds A has never heard of (up to 1.5 MiB a
  connection, until A drops it);
* ``idle_links``: authenticated links from throwaway identities, opened until A refuses
  more (at most 200), then held without a word;
* ``beacons``: forged radio beacons from random sources on A's radio, as fast as the
  cable's 115,200 baud takes them (about 300 a second);
* ``control``: 1,100 connections to A's control socket, held open;
* ``drive``: ``usb sync`` through A of a drive whose manifest lists 10,000 segments that
  are missing, then of a drive whose manifest is 400 MB.

After the last attack, A's store must still be ``check``-clean: a figure bought with lost
data would not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from meshnode.bench.lan import BenchDaemon, rss_mb
from meshnode.codec.channel import encode_beacon
from meshnode.codec.frame import encode_define
from meshnode.codec.manifest import Manifest, SegmentInfo, encode_manifest, segment_name
from meshnode.codec.message import ContentType
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon.control import ControlClient, control_socket_path
from meshnode.host.datadir import init_data_dir, store_path
from meshnode.links.tcp import TcpSettings, dial
from meshnode.radio.fragment import LinkPacket, encode_link_packet
from meshnode.radio.kiss import encode_kiss
from meshnode.secure.identity import (
    DEFAULT_NETWORK_KEY,
    Identity,
    format_feed_id,
    network_tag,
    parse_feed_id,
)
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import PeerId
from meshnode.usb.drive import DEFAULT_CAP_BYTES, DRIVE_DIR, init_drive

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

__all__ = ["bench_hostile"]

_TS_MS = 1_700_000_000_000
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_FRIEND_ENTRIES = 100
_SYNC_TIMEOUT_S = 120.0
_FRIENDS = 3  # friends served one after another for each figure; the median is reported
_SETTLE_S = 2.0  # after start, and before each friend, for the daemon to go quiet
_WARMUP_S = 3.0  # an attack runs this long before the friend starts
_DEFINE_BYTES = 1_500_000  # of DEFINE frames per "defines" connection
_MAX_IDLE_LINKS = 200
_CONTROL_CONNECTIONS = 1_100
_BEACONS_PER_S = 300
_MISSING_SEGMENTS = 10_000
_BIG_MANIFEST_BYTES = 400 * 1000 * 1000


class _Peak:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


class _Village:
    """Daemon A, its radio cable, and friends made on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        data = root / "a"
        me = init_data_dir(data, None)
        self.a_id = format_feed_id(me.feed_id)
        self.master, slave = os.openpty()
        config = data / "xdg" / "meshnode" / "meshnode.toml"  # BenchDaemon's XDG_CONFIG_HOME
        config.parent.mkdir(parents=True)
        radio = f'[[radio]]\nname = "cable"\ndriver = "serial"\nport = "{os.ttyname(slave)}"\n'
        config.write_text(radio)
        self.a = BenchDaemon(data)
        _, match = self.a.wait_for(_LISTENING)
        self.port = int(match.group(1))
        self.control = ControlClient(control_socket_path(data, {}))
        self.data = data
        self._friends = 0

    def make_friend(self) -> tuple[Path, str]:
        """A data dir whose own feed holds _FRIEND_ENTRIES entries; A follows it."""
        self._friends += 1
        data = self.root / f"friend{self._friends}"
        me = init_data_dir(data, None)
        store = FileStore(store_path(data), StoreConfig(fsync="never"))
        node = Node(me, network_key=DEFAULT_NETWORK_KEY, store=store, rng=random.Random(1))
        for i in range(_FRIEND_ENTRIES):
            text = f"news from the friend, number {i}".encode()
            node.publish(ContentType.POST, text, timestamp_ms=_TS_MS + i)
        node.close()
        friend = format_feed_id(me.feed_id)
        self.control.call("contact", action="follow", target=friend)
        return data, friend

    def held(self, feed: str) -> int:
        ranges = self.control.call("status").get("ranges")
        assert isinstance(ranges, dict)
        held = ranges.get(feed)
        return int(held["latest"]) if isinstance(held, dict) else 0

    def serve_friend(self) -> float:
        """Seconds from a new friend's start until A holds all its entries."""
        data, friend = self.make_friend()
        peer = BenchDaemon(data, "--peer", f"127.0.0.1:{self.port}{self.a_id}")
        try:
            start, _ = peer.wait_for(_LISTENING)
            deadline = time.monotonic() + _SYNC_TIMEOUT_S
            while self.held(friend) < _FRIEND_ENTRIES:
                if time.monotonic() > deadline or self.a.proc.poll() is not None:
                    raise RuntimeError(f"A holds {self.held(friend)} of the friend's entries")
                time.sleep(0.02)
            return time.perf_counter() - start
        finally:
            peer.stop()

    def close(self) -> None:
        try:
            self.a.stop()
        finally:
            os.close(self.master)


# -- the floods ---------------------------------------------------------------------------


async def _stranger_session(village: _Village, stop: asyncio.Event) -> None:
    rng = random.Random()
    identity = Identity(rng.randbytes(32))
    server = PeerId(parse_feed_id(village.a_id))
    node = Node(identity, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=rng)
    link = await dial(
        "127.0.0.1",
        village.port,
        identity=identity,
        network_key=DEFAULT_NETWORK_KEY,
        server=server,
        settings=TcpSettings(),
    )
    node.connect(server, now=time.monotonic())
    link.send([frame for _, frame in node.frames_to_send()])  # a proper HELLO first
    reader = asyncio.ensure_future(link.run(lambda _link, _frames: None, lambda _l, _n: None))
    sent, start = 0, rng.randrange(1 << 20)
    while sent < _DEFINE_BYTES and not stop.is_set() and not reader.done():
        tags = sorted(rng.sample(range(1 << 32), 500))  # names of feeds A never heard of
        frame = encode_define(start, tags)
        start += len(tags)
        link.send([frame])
        sent += len(frame)
        await asyncio.sleep(0)
    link.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader, 5)


async def _defines(village: _Village, stop: asyncio.Event, facts: dict[str, int]) -> None:
    facts["sessions"] = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):  # A closing on a stranger is the point
            await asyncio.wait_for(_stranger_session(village, stop), 10)
            facts["sessions"] += 1


async def _idle_links(village: _Village, stop: asyncio.Event, facts: dict[str, int]) -> None:
    links = []
    server = PeerId(parse_feed_id(village.a_id))
    for _ in range(_MAX_IDLE_LINKS):
        if stop.is_set():
            break
        try:
            link = await dial(
                "127.0.0.1",
                village.port,
                identity=Identity(os.urandom(32)),
                network_key=DEFAULT_NETWORK_KEY,
                server=server,
                settings=TcpSettings(),
            )
        except Exception:  # refused: the slots are full, as the attack wanted
            continue
        links.append(link)
        facts["links_opened"] = len(links)
    await stop.wait()
    for link in links:
        link.abort()


async def _beacons(village: _Village, stop: asyncio.Event, facts: dict[str, int]) -> None:
    net = bytes.fromhex(network_tag(DEFAULT_NETWORK_KEY))
    rng = random.Random(3)
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        burst = b"".join(
            encode_kiss(
                encode_link_packet(
                    LinkPacket(payload=encode_beacon(rng.randbytes(4), net, rng.randbytes(4)))
                )
            )
            for _ in range(_BEACONS_PER_S // 10)
        )
        await loop.run_in_executor(None, os.write, village.master, burst)
        facts["beacons_sent"] = facts.get("beacons_sent", 0) + _BEACONS_PER_S // 10
        await asyncio.sleep(0.1)


async def _control(village: _Village, stop: asyncio.Event, facts: dict[str, int]) -> None:
    path = str(control_socket_path(village.data, {}))
    held: list[socket.socket] = []
    for _ in range(_CONTROL_CONNECTIONS):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(path)
        except OSError:
            client.close()
            continue
        held.append(client)
        facts["connections_held"] = len(held)
        if len(held) % 100 == 0:
            await asyncio.sleep(0)
    await stop.wait()
    for client in held:
        client.close()


def _drives_made(root: Path) -> list[Path]:
    """A drive listing _MISSING_SEGMENTS segments that are not there, and one whose
    manifest is a sparse file of _BIG_MANIFEST_BYTES zeros."""
    network = network_tag(DEFAULT_NETWORK_KEY)
    missing = root / "drive-missing"
    missing.mkdir()
    init_drive(missing, DEFAULT_NETWORK_KEY, DEFAULT_CAP_BYTES)
    segments = tuple(
        SegmentInfo(name=segment_name(n), size_bytes=1000, sha256="0" * 64, feeds={})
        for n in range(1, _MISSING_SEGMENTS + 1)
    )
    manifest = Manifest(
        network=network,
        cap_bytes=DEFAULT_CAP_BYTES,
        next_segment=_MISSING_SEGMENTS + 1,
        segments=segments,
    )
    (missing / DRIVE_DIR / "manifest.json").write_bytes(encode_manifest(manifest))
    big = root / "drive-big"
    big.mkdir()
    init_drive(big, DEFAULT_NETWORK_KEY, DEFAULT_CAP_BYTES)
    with (big / DRIVE_DIR / "manifest.json").open("wb") as out:
        out.truncate(_BIG_MANIFEST_BYTES)
    return [missing, big]


async def _drives(village: _Village, stop: asyncio.Event, facts: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    facts["syncs"] = 0
    while not stop.is_set():
        # Made afresh each round: a sync repairs the drive, and the attack is the lie.
        folder = Path(tempfile.mkdtemp(dir=village.root, prefix="drives"))
        for drive in await loop.run_in_executor(None, _drives_made, folder):
            await loop.run_in_executor(None, _sync_drive, village, drive)
            facts["syncs"] += 1
        await loop.run_in_executor(None, shutil.rmtree, folder)


def _sync_drive(village: _Village, drive: Path) -> None:
    with contextlib.suppress(Exception):  # refusing the drive is the right outcome
        for _ in village.control.stream("usb_sync", path=str(drive)):
            pass


_Facts: TypeAlias = "dict[str, int]"
_Attack: TypeAlias = "Callable[[_Village, asyncio.Event, _Facts], Coroutine[Any, Any, None]]"
_ATTACKS: dict[str, _Attack] = {
    "defines": _defines,
    "idle_links": _idle_links,
    "beacons": _beacons,
    "control": _control,
    "drive": _drives,
}


def _check(data: Path) -> int:
    """Problems ``meshnode check`` finds in A's store once A has stopped."""
    done = subprocess.run(
        [sys.executable, "-m", "meshnode", "--data", str(data), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(done.stdout)
    problems = report.get("problems", [])
    return len(problems) if isinstance(problems, list) else -1


class _Flood:
    """Runs one attack in its own thread and event loop until stopped."""

    def __init__(self, village: _Village, attack: _Attack) -> None:
        self.facts: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(village, attack),), daemon=True
        )
        self._thread.start()

    async def _main(self, village: _Village, attack: _Attack) -> None:
        self._stop = asyncio.Event()
        await attack(village, self._stop, self.facts)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def bench_hostile(only: tuple[str, ...] = ()) -> dict[str, object]:
    """Run the floods (``only`` these, if named) against one daemon; see the module doc."""
    with tempfile.TemporaryDirectory(prefix="mnhostile") as tmp:
        village = _Village(Path(tmp))
        try:
            time.sleep(_SETTLE_S)
            idle_rss = village.a.rss_mb()
            reference = statistics.median(village.serve_friend() for _ in range(_FRIENDS))
            attacks: dict[str, object] = {}
            for name, attack in _ATTACKS.items():
                if only and name not in only:
                    continue
                time.sleep(_SETTLE_S)
                peak = _Peak(village.a.proc.pid)
                cpu = village.a.cpu_s()
                flood = _Flood(village, attack)
                try:
                    time.sleep(_WARMUP_S)
                    served = statistics.median(village.serve_friend() for _ in range(_FRIENDS))
                finally:
                    flood.stop()
                attacks[name] = {
                    "rss_mb": round(peak.stop(), 1),
                    "served_peer_s": round(served, 3),
                    "cpu_s": round(village.a.cpu_s() - cpu, 2),
                    **flood.facts,
                }
        finally:
            village.close()
        problems = _check(village.data)
    return {
        "idle_rss_mb": round(idle_rss, 1),
        "served_peer_ref_s": round(reference, 3),
        "attacks": attacks,
        "check_problems": problems,
    }

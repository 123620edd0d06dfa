"""LAN benchmark: two ``meshnode run`` daemons on loopback, one empty, one full.

Setup, not timed: A's data dir gets 100,000 signed entries over 1,000 feeds that it
follows; B's gets follows of the same 1,000 feeds and nothing else. Both daemons run as
separate processes (``--no-mdns``); B dials A with A's key pinned. The clock starts when
B says it is listening and stops when B's control socket reports every entry held.

* ``entries_per_s``: entries B stored per second of that span (handshake included).
* ``verify_per_s``: bare PyNaCl verification of the same entries, in this process.
* ``ratio``: entries_per_s / verify_per_s (goal >= 0.6).
* ``wire_bytes_per_entry``: TCP payload bytes both ways between the two (B's count).
* ``stored_bytes_per_entry``: bytes B's store grew by per entry (goal: wire <= 1.15 x).
* ``sender_cpu_s``, ``receiver_cpu_s``: CPU seconds A and B used during the sync.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nacl.bindings

from meshnode.bench.ingest import make_feeds
from meshnode.codec.content import ContactAction
from meshnode.core.node import Node
from meshnode.daemon.control import ControlClient, control_socket_path
from meshnode.host.datadir import init_data_dir, store_path
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from meshnode.store.flatfile import FileStore, StoreConfig

__all__ = ["BenchDaemon", "bench_lan", "rss_mb"]

_TS_MS = 1_700_000_000_000
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_TIMEOUT_S = 600.0


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc); NaN when it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class BenchDaemon:
    """A ``meshnode run`` child process whose stderr lines are timestamped as they come."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        env.pop("RUNTIME_DIRECTORY", None)
        env["XDG_CONFIG_HOME"] = str(data_dir / "xdg")  # no user config
        cmd = [sys.executable, "-m", "meshnode", "--data", str(data_dir), "run", "--no-mdns"]
        self.proc = subprocess.Popen(
            [*cmd, "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.control = ControlClient(control_socket_path(data_dir, {}))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter(), line.rstrip()))

    def wait_for(self, pattern: re.Pattern[str]) -> tuple[float, re.Match[str]]:
        """Time and match of the first stderr line matching ``pattern``."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return at, match
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        tail = "\n".join(line for _, line in self.lines[-20:])
        raise RuntimeError(f"daemon did not log {pattern.pattern!r}:\n{tail}")

    def rss_mb(self) -> float:
        """Resident memory of the daemon now, in MiB (Linux /proc)."""
        return rss_mb(self.proc.pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds the daemon has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then wait for a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # ours, by its PID: never leave a daemon behind
            self.proc.wait()
            raise RuntimeError("daemon did not stop within 30 s of SIGTERM") from None
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if code != 0:
            raise RuntimeError(f"daemon exited {code}")


def _prepare(root: Path, feeds: int, per_feed: int) -> tuple[Path, Path, str, list[bytes]]:
    """A full data dir and an empty one following the same feeds; returns the raw entries."""
    chains = make_feeds(feeds, per_feed)
    raws = [chain[i].raw for i in range(per_feed) for chain in chains]
    authors = [chain[0].author for chain in chains]
    dirs = []
    for name, fill in (("a", True), ("b", False)):
        data = root / name
        me = init_data_dir(data, None)
        store = FileStore(store_path(data), StoreConfig(fsync="never"))
        node = Node(me, network_key=DEFAULT_NETWORK_KEY, store=store, rng=random.Random(1))
        for author in authors:
            node.set_contact(ContactAction.FOLLOW, author, timestamp_ms=_TS_MS)
        if fill:
            for raw in raws:
                node.ingest(raw)
        node.close()
        dirs.append((data, format_feed_id(me.feed_id)))
    return dirs[0][0], dirs[1][0], dirs[0][1], raws


def _verify_per_s(raws: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in raws:
        nacl.bindings.crypto_sign_open(raw[-64:] + DEFAULT_NETWORK_KEY + raw[:-64], raw[1:33])
    return len(raws) / (time.perf_counter() - start)


def _held(daemon: BenchDaemon) -> tuple[int, int]:
    status = daemon.control.call("status", brief=True)
    entries, size = status.get("entries"), status.get("bytes")
    assert isinstance(entries, int)
    assert isinstance(size, int)
    return entries, size


def bench_lan(feeds: int = 1000, per_feed: int = 100) -> dict[str, object]:
    """Sync ``feeds`` x ``per_feed`` entries from a full daemon to an empty one."""
    with tempfile.TemporaryDirectory(prefix="mnlan") as tmp:
        a_dir, b_dir, a_id, raws = _prepare(Path(tmp), feeds, per_feed)
        verify_per_s = _verify_per_s(raws)
        a = BenchDaemon(a_dir)
        b: BenchDaemon | None = None
        try:
            _, match = a.wait_for(_LISTENING)
            b = BenchDaemon(b_dir, "--peer", f"127.0.0.1:{match.group(1)}{a_id}")
            start, _ = b.wait_for(_LISTENING)
            base_entries, base_bytes = _held(b)
            cpu_start = a.cpu_s(), b.cpu_s()
            goal = base_entries + len(raws)
            deadline = time.monotonic() + _TIMEOUT_S
            while (held := _held(b))[0] < goal:
                if time.monotonic() > deadline or b.proc.poll() is not None:
                    raise RuntimeError(f"B holds {held[0] - base_entries} of {len(raws)}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            cpu = a.cpu_s() - cpu_start[0], b.cpu_s() - cpu_start[1]
            peers = b.control.call("peers").get("peers")
            assert isinstance(peers, list)
            assert peers
            wire = int(peers[0]["bytes_in"]) + int(peers[0]["bytes_out"])
        finally:
            try:
                if b is not None:
                    b.stop()
            finally:
                a.stop()
    entries_per_s = len(raws) / elapsed
    return {
        "entries": len(raws),
        "feeds": feeds,
        "sync_s": round(elapsed, 3),
        "entries_per_s": round(entries_per_s),
        "verify_per_s": round(verify_per_s),
        "ratio": round(entries_per_s / verify_per_s, 3),
        "wire_bytes_per_entry": round(wire / len(raws), 1),
        "stored_bytes_per_entry": round((held[1] - base_bytes) / len(raws), 1),
        "wire_to_stored": round(wire / (held[1] - base_bytes), 3),
        "sender_cpu_s": round(cpu[0], 2),
        "receiver_cpu_s": round(cpu[1], 2),
    }

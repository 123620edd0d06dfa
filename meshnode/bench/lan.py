"""LAN benchmark: two ``meshnode run`` daemons on loopback, one empty, one full.

Setup, not timed: A's data dir gets 100,000 signed entries over 1,000 feeds that it
follows; B's gets follows of the same 1,000 feeds and nothing else. Each sync runs on fresh
copies of the two: both daemons as separate processes (``--no-mdns``) on the same machine,
so the sender shares the cores; B dials A with A's key pinned. The clock starts when B says
it is listening and stops when B's control socket reports every entry held. Syncs with
``[node] verify_threads`` = ``cores`` (default: the usable cores) and = 1 alternate for
``rounds`` rounds, with bare verification between them; the medians are compared.

* ``cores``: verify threads (worker processes) of the first figure.
* ``entries_per_s``: entries B stored per second of that span (handshake included).
* ``verify_per_s``: bare PyNaCl verification of the same entries on one core, here.
* ``ratio``: entries_per_s / verify_per_s (goal >= 1.0 on 2 cores); ``ratio_one_thread``
  and ``entries_per_s_one_thread`` with ``verify_threads = 1``.
* ``wire_bytes_per_entry``: TCP payload bytes both ways between the two (B's count).
* ``stored_bytes_per_entry``: bytes B's store grew by per entry (goal: wire <= 1.15 x).
* ``sender_cpu_s``, ``receiver_cpu_s``: CPU seconds A and B used during the sync,
  ``checkers_cpu_s`` B's checker processes; ``receiver_cpu_s_one_thread`` with one thread.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings

from meshnode.bench.ingest import make_feeds
from meshnode.codec.content import ContactAction
from meshnode.core.node import Node
from meshnode.daemon.control import ControlClient, control_socket_path
from meshnode.host.datadir import init_data_dir, store_path
from meshnode.host.verify import usable_cores
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
        return _cpu_s(self.proc.pid)

    def children_cpu_s(self) -> float:
        """CPU seconds of the daemon's child processes (its checkers), live and ended."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return float("nan")
        return _cpu_s(self.proc.pid, children=True) + sum(_cpu_s(int(c)) for c in children.split())

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


def _cpu_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` (of its reaped children with
    ``children``), from Linux /proc; NaN when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


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


def _verify_s(raws: list[bytes]) -> float:
    """Seconds for bare PyNaCl verification of ``raws`` on one core."""
    start = time.perf_counter()
    for raw in raws:
        nacl.bindings.crypto_sign_open(raw[-64:] + DEFAULT_NETWORK_KEY + raw[:-64], raw[1:33])
    return time.perf_counter() - start


def _held(daemon: BenchDaemon) -> tuple[int, int]:
    status = daemon.control.call("status", brief=True)
    entries, size = status.get("entries"), status.get("bytes")
    assert isinstance(entries, int)
    assert isinstance(size, int)
    return entries, size


@dataclass(frozen=True, slots=True)
class _Sync:
    """What one sync took."""

    elapsed_s: float
    wire_bytes: int
    stored_bytes: int
    sender_cpu_s: float
    receiver_cpu_s: float
    checkers_cpu_s: float


def _fresh(snapshot: Path, data: Path, threads: int) -> Path:
    """A copy of a prepared data dir whose daemon checks signatures on ``threads``."""
    shutil.copytree(snapshot, data, symlinks=True)
    config = data / "xdg" / "meshnode" / "meshnode.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"[node]\nverify_threads = {threads}\n")
    return data


def _sync(root: Path, a_snap: Path, b_snap: Path, a_id: str, count: int, threads: int) -> _Sync:
    """Sync fresh copies of the prepared dirs, both daemons on ``threads`` verify threads."""
    a = BenchDaemon(_fresh(a_snap, root / "a", threads))
    b: BenchDaemon | None = None
    try:
        _, match = a.wait_for(_LISTENING)
        peer = f"127.0.0.1:{match.group(1)}{a_id}"
        b = BenchDaemon(_fresh(b_snap, root / "b", threads), "--peer", peer)
        start, _ = b.wait_for(_LISTENING)
        base_entries, base_bytes = _held(b)
        cpu_start = a.cpu_s(), b.cpu_s(), b.children_cpu_s()
        deadline = time.monotonic() + _TIMEOUT_S
        while (held := _held(b))[0] < base_entries + count:
            if time.monotonic() > deadline or b.proc.poll() is not None:
                raise RuntimeError(f"B holds {held[0] - base_entries} of {count}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        cpu = a.cpu_s() - cpu_start[0], b.cpu_s() - cpu_start[1]
        checkers = b.children_cpu_s() - cpu_start[2]
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
    shutil.rmtree(root, ignore_errors=True)
    return _Sync(elapsed, wire, held[1] - base_bytes, cpu[0], cpu[1], checkers)


def bench_lan(
    feeds: int = 1000, per_feed: int = 100, rounds: int = 3, threads: int = 0
) -> dict[str, object]:
    """Sync ``feeds`` x ``per_feed`` entries from a full daemon to an empty one, with
    ``threads`` verify threads (0: the usable cores) and with one, alternately."""
    cores = threads or usable_cores()
    with tempfile.TemporaryDirectory(prefix="mnlan") as tmp:
        a_snap, b_snap, a_id, raws = _prepare(Path(tmp), feeds, per_feed)
        runs: dict[int, list[_Sync]] = {cores: [], 1: []}
        verifies = []
        for r in range(rounds):
            for t in runs:
                runs[t].append(_sync(Path(tmp) / f"run{r}-{t}", a_snap, b_snap, a_id, len(raws), t))
            verifies.append(_verify_s(raws))
    verify_per_s = len(raws) / statistics.median(verifies)
    best, single = (_median(runs[t]) for t in (cores, 1))
    return {
        "entries": len(raws),
        "feeds": feeds,
        "rounds": rounds,
        "cores": cores,
        "sync_s": round(best.elapsed_s, 3),
        "entries_per_s": round(len(raws) / best.elapsed_s),
        "verify_per_s": round(verify_per_s),
        "ratio": round(len(raws) / best.elapsed_s / verify_per_s, 3),
        "entries_per_s_one_thread": round(len(raws) / single.elapsed_s),
        "ratio_one_thread": round(len(raws) / single.elapsed_s / verify_per_s, 3),
        "wire_bytes_per_entry": round(best.wire_bytes / len(raws), 1),
        "stored_bytes_per_entry": round(best.stored_bytes / len(raws), 1),
        "wire_to_stored": round(best.wire_bytes / best.stored_bytes, 3),
        "sender_cpu_s": round(best.sender_cpu_s, 2),
        "receiver_cpu_s": round(best.receiver_cpu_s, 2),
        "checkers_cpu_s": round(best.checkers_cpu_s, 2),
        "receiver_cpu_s_one_thread": round(single.receiver_cpu_s, 2),
    }


def _median(syncs: list[_Sync]) -> _Sync:
    """The sync of median length (the upper one of an even count)."""
    return sorted(syncs, key=lambda sync: sync.elapsed_s)[len(syncs) // 2]

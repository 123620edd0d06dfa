"""`meshnode run` as a process: the control socket, TCP sync, signals, sd_notify, bad input."""

from __future__ import annotations

import re
import signal
import socket
import time
from typing import TYPE_CHECKING

import pytest

from meshnode.daemon.control import ControlClient
from meshnode.secure.identity import format_feed_id
from tests.daemons import STOP_TIMEOUT_S, DaemonPool, daemon_pool, wait_for
from tests.fakes import identity

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.daemons import Daemon

pytestmark = pytest.mark.integration

SYNC_TIMEOUT_S = 20.0
# A full 20,000-entry sync takes about 1.5 s on loopback; resuming it takes less.
RESUME_TIMEOUT_S = 10.0
BIG_FEED = 20_000


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    """Daemons under a short /tmp root; all stopped (SIGTERM, then SIGKILL) afterwards."""
    with daemon_pool() as p:
        yield p


def _lines(count: int, prefix: str) -> str:
    return "".join(f"{prefix} {i}\n" for i in range(1, count + 1))


def _seqs(entries: list[dict[str, object]]) -> list[object]:
    return [e["seq"] for e in entries]


def _peer(pool: DaemonPool, data: Path, feed_id: str) -> dict[str, object] | None:
    peers = pool.json(data, "peers")
    assert peers["running"] is True
    assert isinstance(peers["peers"], list)
    return next((p for p in peers["peers"] if p["id"] == feed_id), None)


def _held(status: dict[str, object], feed_id: str) -> int:
    """The latest seq of ``feed_id`` a status answer says is held (0 for none)."""
    ranges = status["ranges"]
    assert isinstance(ranges, dict)
    held = ranges.get(feed_id)
    return int(held["latest"]) if isinstance(held, dict) else 0


def _assert_checks_ok(pool: DaemonPool, *dirs: Path) -> None:
    for data in dirs:
        report = pool.json(data, "check")
        assert report["ok"] is True, report


def _stop_both(a: Daemon, b: Daemon) -> None:
    """One SIGTERM to each at once; both must exit 0 within STOP_TIMEOUT_S."""
    a.signal_stop()
    b.signal_stop()
    assert (a.wait_exit(), b.wait_exit()) == (0, 0)


class ResumeStalled(AssertionError):
    """A restarted pair did not finish the sync that SIGTERM interrupted."""


def test_cli_goes_through_the_control_socket_and_a_second_run_is_refused(
    pool: DaemonPool,
) -> None:
    a, _ = pool.init("a")
    daemon = pool.start("a")
    friend = format_feed_id(identity(7).feed_id)

    assert pool.ok(a, "post", "hello mesh").startswith("posted #1 ")
    assert pool.ok(a, "post", "-", stdin="one\ntwo\nthree\n").strip() == "posted 3 entries"
    assert pool.ok(a, "follow", friend)
    entries = pool.feed(a)
    assert _seqs(entries) == [1, 2, 3, 4, 5]
    assert [e.get("text") for e in entries[:4]] == ["hello mesh", "one", "two", "three"]
    assert entries[4]["contact"] == {"action": "follow", "target": friend}

    status = pool.json(a, "status")
    daemon_info = status["daemon"]
    assert isinstance(daemon_info, dict)
    assert daemon_info["pid"] == daemon.proc.pid
    assert daemon_info["listening"] == [daemon.address]
    # The poster's address is where the daemon serves its page (here a port chosen at start).
    assert str(daemon_info["page_url"]).startswith("http://")
    assert not str(daemon_info["page_url"]).endswith(":0/")
    assert pool.json(a, "web", "qr")["url"] == daemon_info["page_url"]
    assert status["entries"] == 5
    assert status["follows"] == 1
    assert pool.json(a, "peers") == {"running": True, "peers": [], "radios": []}

    second = pool.cli(a, "run", "--no-mdns", "--web", "127.0.0.1:0", "--listen", "127.0.0.1:1")
    assert second.returncode == 1
    assert f"in use by another meshnode process (pid {daemon.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert daemon.running()
    assert pool.ok(a, "post", "still here").startswith("posted #6 ")
    assert daemon.terminate() == 0


def test_two_daemons_replicate_both_ways_and_stop_cleanly(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)  # offline: no daemon yet
    daemon_a = pool.start("a")
    daemon_b = pool.start("b", "--peer", daemon_a.address)
    pool.ok(b, "follow", a_id)  # through B's control socket
    assert pool.ok(a, "post", "-", stdin=_lines(200, "news")).strip() == "posted 200 entries"

    def b_has_all() -> list[dict[str, object]] | None:
        entries = pool.feed(b, a_id)
        return entries if len(entries) >= 201 else None

    entries = wait_for("B to hold A's 201 entries", b_has_all, SYNC_TIMEOUT_S)
    assert _seqs(entries) == list(range(1, 202))
    assert entries[-1]["text"] == "news 200"

    def a_connected_with_rtt() -> dict[str, object] | None:
        peer = _peer(pool, b, a_id)
        return peer if peer is not None and peer["rtt_ms"] is not None else None

    peer = wait_for("B to measure its rtt to A", a_connected_with_rtt, SYNC_TIMEOUT_S)
    assert peer["connected"] is True
    assert peer["direction"] == "out"
    assert peer["address"] == daemon_a.address
    assert isinstance(peer["bytes_in"], int)
    assert peer["bytes_in"] > 0
    assert isinstance(peer["entries_in"], int)
    assert peer["entries_in"] >= 200
    # B's follow entry went the other way: A follows B.
    wait_for("A to hold B's feed", lambda: pool.feed(a, b_id) or None, SYNC_TIMEOUT_S)

    _stop_both(daemon_a, daemon_b)
    _assert_checks_ok(pool, a, b)


def test_sigterm_during_sync_keeps_a_prefix_and_a_restart_resumes(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    assert pool.ok(a, "post", "-", stdin=_lines(BIG_FEED, "entry")).strip() == (
        f"posted {BIG_FEED} entries"
    )
    pool.ok(b, "follow", a_id)
    daemon_a = pool.start("a")
    daemon_b = pool.start("b", "--peer", daemon_a.address)
    # The CLI's own socket, in-process: a CLI poll costs an interpreter start, and the
    # whole sync takes a second or two on loopback.
    b_control = ControlClient(b / "control.sock")

    def partly_synced() -> int | None:
        held = _held(b_control.call("status"), a_id)
        assert held < BIG_FEED, "B synced everything before it could be interrupted"
        return held if held > 0 else None

    wait_for("B to hold some of A's feed", partly_synced, SYNC_TIMEOUT_S)
    _stop_both(daemon_a, daemon_b)

    _assert_checks_ok(pool, a, b)
    seqs = _seqs(pool.feed(b, a_id))
    assert 0 < len(seqs) < BIG_FEED
    assert seqs == list(range(1, len(seqs) + 1))

    daemon_a = pool.start("a")
    daemon_b = pool.start("b", "--peer", daemon_a.address)

    def fully_synced() -> bool | None:
        return True if _held(b_control.call("status"), a_id) == BIG_FEED else None

    try:
        wait_for("B to resume and hold all of A's feed", fully_synced, RESUME_TIMEOUT_S)
    except AssertionError as exc:
        raise ResumeStalled(str(exc)) from exc
    _stop_both(daemon_a, daemon_b)
    assert _seqs(pool.feed(b, a_id)) == list(range(1, BIG_FEED + 1))


def _datagrams(sock: socket.socket, until: str, timeout_s: float) -> list[str]:
    """Datagrams received until one holds the line ``until``; AssertionError at the deadline."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not got or until not in got[-1].splitlines():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {until} within {timeout_s:g} s; got {got}")
        sock.settimeout(left)
        try:
            got.append(sock.recv(4096).decode("utf-8"))
        except TimeoutError:
            continue
    return got


def test_sd_notify_ready_watchdog_and_stopping(pool: DaemonPool) -> None:
    pool.init("a")
    path = pool.root / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        daemon = pool.start("a", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        first = _datagrams(sock, "READY=1", 5.0)
        assert len(first) == 1, first
        assert any(line.startswith("STATUS=listening on ") for line in first[0].splitlines())
        # WATCHDOG_USEC/2 = 0.2 s between pings; two arrive well within 5 s.
        _datagrams(sock, "WATCHDOG=1", 5.0)
        _datagrams(sock, "WATCHDOG=1", 5.0)
        daemon.signal_stop()
        _datagrams(sock, "STOPPING=1", STOP_TIMEOUT_S)
        assert daemon.wait_exit() == 0


def test_a_node_of_another_network_is_refused_and_others_still_sync(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b", "--new-network")
    c, _ = pool.init("c")
    pool.ok(a, "post", "-", stdin=_lines(5, "village"))
    pool.ok(b, "follow", a_id)
    pool.ok(c, "follow", a_id)
    daemon_a = pool.start("a")
    daemon_b = pool.start("b", "--peer", f"{daemon_a.address}{a_id}")

    def a_refused_b() -> re.Match[str] | None:
        return re.search(r"handshake with 127\.0\.0\.1:(\d+) failed", daemon_a.stderr())

    refused = wait_for("A to log the failed handshake", a_refused_b, SYNC_TIMEOUT_S)
    assert int(refused.group(1)) != daemon_a.port  # B's end of the connection
    wait_for(
        "B to log the failed handshake",
        lambda: f"handshake with {daemon_a.address} failed" in daemon_b.stderr() or None,
        SYNC_TIMEOUT_S,
    )

    daemon_c = pool.start("c", "--peer", daemon_a.address)
    entries = wait_for(
        "C to hold A's posts",
        lambda: e if len(e := pool.feed(c, a_id)) == 5 else None,
        SYNC_TIMEOUT_S,
    )
    assert [e["text"] for e in entries] == [f"village {i}" for i in range(1, 6)]
    assert pool.feed(b, a_id) == []
    assert _held(pool.json(b, "status"), a_id) == 0
    assert all(d.running() for d in (daemon_a, daemon_b, daemon_c))


def test_bad_lan_config_exits_78_naming_the_key(pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    config = pool.root / "bad.toml"
    config.write_text('[lan]\nlisten = "nonsense"\n', encoding="utf-8")
    done = pool.cli(a, "run", "--no-mdns", "--web", "127.0.0.1:0", pre=("--config", str(config)))
    assert done.returncode == 78
    assert "lan.listen" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_is_one_error_line(pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        done = pool.cli(
            a, "run", "--no-mdns", "--web", "127.0.0.1:0", "--listen", f"127.0.0.1:{port}"
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("meshnode: error:")]
    assert len(errors) == 1, done.stderr
    assert str(port) in errors[0]
    assert "in use" in errors[0]


def test_a_second_sigterm_while_stopping_still_exits_cleanly(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "-", stdin=_lines(50, "news"))
    daemon_a = pool.start("a")
    daemon_b = pool.start("b", "--peer", daemon_a.address)
    wait_for("B to hold A's posts", lambda: len(pool.feed(b, a_id)) >= 50 or None, SYNC_TIMEOUT_S)
    for daemon in (daemon_a, daemon_b):
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.005)  # the second signal lands while the first is being handled
        daemon.proc.send_signal(signal.SIGTERM)
    assert [daemon_a.wait_exit(), daemon_b.wait_exit()] == [0, 0]
    _assert_checks_ok(pool, a, b)

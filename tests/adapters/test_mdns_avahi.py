"""meshnode's mDNS beside avahi-daemon (deploy.md 3.1, option 2), in throwaway namespaces.

Namespaces A and B are joined by a veth pair with link-local addresses (avahi ignores
loopback). avahi-daemon runs in B first, as on a Pi, in a private mount namespace (tmpfs
/run, its own services dir, no D-Bus), and publishes a `_meshnode._tcp` service of its own.
Then one `meshnode run` per namespace: they must find each other and sync while both
stacks share UDP 5353 in B, and A must also hear avahi's service. Root only; nothing
touches the host's interfaces or /run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from meshnode.links.discovery import service_properties
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from tests.daemons import Daemon, daemon_pool, wait_for
from tests.fakes import identity
from tests.netns import ip, netns_exec, network_namespace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

HOST_A, HOST_B = "169.254.77.1", "169.254.77.2"
VETH_A, VETH_B = "mn-ava", "mn-avb"
PORT = 7420  # fixed: each namespace is fresh, so nothing else can hold it
PROBE_PORT = 7499  # avahi's service points here; nothing listens, so A's dial fails
# The waits add up to 30 s at worst; a passing run takes about 5 s.
AVAHI_START_TIMEOUT_S = 5.0
START_TIMEOUT_S = 5.0
SYNC_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
POSTS = [f"beside avahi {i}" for i in range(5)]

_AVAHI_CONF = """\
[server]
allow-interfaces={interface}
enable-dbus=no
[wide-area]
enable-wide-area=no
[publish]
publish-workstation=no
"""
_PROBE_SERVICE = """\
<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name>mn-avahi-probe</name>
  <service><type>_meshnode._tcp</type><port>{port}</port>{txt}</service>
</service-group>
"""
# Runs in `ip netns exec B unshare -m`: the mounts stay in that private mount namespace.
# Every step execs, so the pid we started is avahi-daemon's own.
_AVAHI_SCRIPT = (
    'mount -t tmpfs tmpfs /run && mkdir -p /run/avahi-daemon && mount --bind "$2" '
    '/etc/avahi/services && exec "$3" -f "$1" --no-drop-root --no-chroot --no-rlimits --debug'
)
_AVAHI_READY = '"mn-avahi-probe" (/etc/avahi/services/probe.service) successfully established'


def _binary(name: str, package: str) -> str:
    """Path of ``name``, or skip the test."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip(f"avahi interop test: `{name}` is not installed (apt-get install {package})")
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class _Avahi:
    """The avahi-daemon we started, and its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything it has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def _avahi(namespace: str, tmp_path: Path, binary: str, unshare: str) -> Iterator[_Avahi]:
    """avahi-daemon on ``VETH_B`` in ``namespace``, publishing the probe; stopped by pid after."""
    conf = tmp_path / "avahi-daemon.conf"
    conf.write_text(_AVAHI_CONF.format(interface=VETH_B), encoding="utf-8")
    services = tmp_path / "avahi-services"
    services.mkdir()
    probe = service_properties(identity(3).feed_id, DEFAULT_NETWORK_KEY)
    txt = "".join(f"<txt-record>{k}={v}</txt-record>" for k, v in probe.items())
    service = _PROBE_SERVICE.format(port=PROBE_PORT, txt=txt)
    (services / "probe.service").write_text(service, encoding="utf-8")
    log_path = tmp_path / "avahi.log"
    command = netns_exec(namespace, unshare, "-m", "sh", "-c", _AVAHI_SCRIPT, "sh")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, str(conf), str(services), binary],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    avahi = _Avahi(proc=proc, log_path=log_path)
    try:
        wait_for("avahi to publish", lambda: _avahi_ready(avahi), AVAHI_START_TIMEOUT_S)
        yield avahi
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        print(f"----- avahi-daemon pid {proc.pid} exit {proc.returncode} -----\n{avahi.log()}")


def _avahi_ready(avahi: _Avahi) -> bool | None:
    if _AVAHI_READY in avahi.log():
        return True
    assert avahi.proc.poll() is None, f"avahi-daemon exited at start:\n{avahi.log()}"
    return None


def _start(pool: DaemonPool, name: str, namespace: str, host: str) -> Daemon:
    """`meshnode run` with mDNS in ``namespace``, listening on its veth address."""
    # Not DaemonPool.start: that one listens on 127.0.0.1, which the other namespace cannot reach.
    data = pool.data(name)
    stderr_path = pool.root / f"{name}.stderr"
    command = [sys.executable, "-m", "meshnode", "--data", str(data), "run", "--web", "127.0.0.1:0"]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            netns_exec(namespace, *command, "--listen", f"{host}:{PORT}"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=pool.env,
        )
    daemon = Daemon(name=name, data=data, port=PORT, proc=proc, stderr_path=stderr_path)
    pool.daemons.append(daemon)  # the pool stops it and shows its log on failure

    def listening() -> bool | None:
        if f"listening on {host}:{PORT}" in daemon.stderr():
            return True
        assert daemon.running(), f"{name} exited {proc.returncode} at start"
        return None

    wait_for(f"{name} to listen", listening, START_TIMEOUT_S)
    return daemon


def _mdns_pids(namespace: str) -> set[int]:
    """Pids of the processes holding UDP 5353 in ``namespace``."""
    done = subprocess.run(
        netns_exec(namespace, "ss", "-Hlunp", "sport = :5353"),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
        check=True,
    )
    return {int(pid) for pid in re.findall(r"pid=(\d+)", done.stdout)}


def _posts(pool: DaemonPool, data: Path, feed_id: str) -> list[object]:
    return [e["text"] for e in pool.feed(data, feed_id) if e["type"] == "post"]


def test_daemons_sync_by_mdns_beside_avahi(tmp_path: Path) -> None:
    avahi_daemon = _binary("avahi-daemon", "avahi-daemon")
    unshare = _binary("unshare", "util-linux")
    _binary("ss", "iproute2")
    heard_probe = f"peer {format_feed_id(identity(3).feed_id)} at {HOST_B} port {PROBE_PORT}"
    with (
        network_namespace("mn-ava") as ns_a,
        network_namespace("mn-avb") as ns_b,
    ):
        ip("-n", ns_a, "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B, "netns", ns_b)
        for ns, veth, host in ((ns_a, VETH_A, HOST_A), (ns_b, VETH_B, HOST_B)):
            ip("-n", ns, "addr", "add", f"{host}/24", "dev", veth)
            ip("-n", ns, "link", "set", veth, "up")
        with _avahi(ns_b, tmp_path, avahi_daemon, unshare) as avahi, daemon_pool() as pool:
            a, a_id = pool.init("a")
            b, b_id = pool.init("b")
            pool.ok(a, "follow", b_id)
            pool.ok(b, "follow", a_id)
            pool.ok(a, "post", "-", stdin="".join(f"{text}\n" for text in POSTS))
            daemon_b = _start(pool, "b", ns_b, HOST_B)
            daemon_a = _start(pool, "a", ns_a, HOST_A)

            wait_for(
                "B to hold A's posts",
                lambda: _posts(pool, b, a_id) == POSTS or None,
                SYNC_TIMEOUT_S,
            )
            assert {avahi.proc.pid, daemon_b.proc.pid} <= _mdns_pids(ns_b)  # both on 5353
            # A started after B, so avahi answered A's browse while sharing 5353 with B.
            wait_for(
                "A to hear avahi's service",
                lambda: heard_probe in daemon_a.stderr() or None,
                PROBE_TIMEOUT_S,
            )
            peers = pool.json(b, "peers")["peers"]
            assert isinstance(peers, list)
            by_id = {p["id"]: p for p in peers}
            assert by_id[a_id]["connected"] is True
            # Whoever found the other first dialed it: the other side sees an inbound link.
            a_peers = pool.json(a, "peers")["peers"]
            assert isinstance(a_peers, list)
            sources = {by_id[a_id]["source"], *(p["source"] for p in a_peers)}
            assert "mdns" in sources, sources
            pool.stop_all()
            assert [d.proc.returncode for d in pool.daemons] == [0, 0]
            # meshnode B's goodbyes and closed sockets left avahi running and on 5353.
            assert avahi.proc.poll() is None, "avahi-daemon died"
            assert _mdns_pids(ns_b) == {avahi.proc.pid}

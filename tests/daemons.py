"""Real `meshnode run` processes for integration tests: start, query over the CLI, stop.

Every daemon runs with --no-mdns on 127.0.0.1, with a scrubbed environment (no systemd
variables, no user config) and stderr in a file, so a failing test can show it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

__all__ = [
    "CLI_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Daemon",
    "DaemonPool",
    "daemon_pool",
    "free_port",
    "wait_for",
]

CLI_TIMEOUT_S = 30.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.02
# Variables that change where a daemon puts things or whom it tells; tests set them.
_SCRUBBED = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "RUNTIME_DIRECTORY",
    "STATE_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "MESHNODE_DATA",
    "MESHNODE_CONFIG",
    "XDG_DATA_HOME",
)
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_PORT_TAKEN = "address already in use"
_T = TypeVar("_T")


def wait_for(what: str, probe: Callable[[], _T | None], timeout_s: float) -> _T:
    """Call ``probe`` until it returns something other than None; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(_POLL_S)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the daemon refuses port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Daemon:
    """One `meshnode run` process."""

    name: str
    data: Path
    port: int
    proc: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def address(self) -> str:
        """HOST:PORT it listens on."""
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        """Everything it has logged so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    def signal_stop(self) -> None:
        """Send one SIGTERM (a second one during shutdown may find the default action)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """The exit code once it exits; SIGKILL and AssertionError if it takes too long."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout_s:g} s") from None

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """One SIGTERM, then the exit code (SIGKILL and AssertionError if it does not come)."""
        self.signal_stop()
        return self.wait_exit(timeout_s)

    def kill(self) -> None:
        """SIGKILL (only this process, by its pid) and reap it."""
        if self.running():
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass(slots=True)
class DaemonPool:
    """Data dirs under one short temporary root, the CLI on them, and the daemons started."""

    root: Path
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    def data(self, name: str) -> Path:
        """A data dir path (not created): short, since control.sock must fit AF_UNIX."""
        return self.root / name

    def cli(
        self,
        data: Path,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        pre: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run `meshnode [pre] --data DATA ARGS` to completion."""
        return subprocess.run(
            [sys.executable, "-m", "meshnode", *pre, "--data", str(data), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    def ok(self, data: Path, *args: str, stdin: str | None = None) -> str:
        """Run the CLI, assert exit 0, return stdout."""
        done = self.cli(data, *args, stdin=stdin)
        assert done.returncode == 0, f"meshnode {' '.join(args)}: {done.stderr}"
        return done.stdout

    def json(self, data: Path, *args: str) -> dict[str, object]:
        """Run a --json command that prints one object."""
        value = json.loads(self.ok(data, *args, "--json"))
        assert isinstance(value, dict)
        return value

    def feed(self, data: Path, feed_id: str | None = None) -> list[dict[str, object]]:
        """Entries of a feed held in ``data`` (ours without ``feed_id``)."""
        out = self.ok(data, "feed", *([feed_id] if feed_id else []), "--json")
        return [json.loads(line) for line in out.splitlines()]

    def init(self, name: str, *args: str) -> tuple[Path, str]:
        """`meshnode init` a new data dir; returns it and its feed id."""
        data = self.data(name)
        value = json.loads(self.ok(data, "init", "--json", *args))
        assert isinstance(value, dict)
        return data, str(value["id"])

    def start(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        pre: Sequence[str] = (),
        wrap: Sequence[str] = (),
        mdns: bool = False,
    ) -> Daemon:
        """Start `meshnode run` (``--no-mdns`` unless ``mdns``) and wait until it listens.

        ``wrap`` goes before the command, e.g. ``ip netns exec NAME``.
        """
        for _ in range(3):
            daemon = self._spawn(name, free_port(), args, env or {}, pre, wrap, mdns)
            if self._wait_listening(daemon):
                return daemon
        raise AssertionError(f"{name} could not get a free port")

    def _spawn(
        self,
        name: str,
        port: int,
        args: Sequence[str],
        env: Mapping[str, str],
        pre: Sequence[str],
        wrap: Sequence[str],
        mdns: bool,
    ) -> Daemon:
        data = self.data(name)
        n = sum(1 for d in self.daemons if d.name == name)
        stderr_path = self.root / f"{name}.{n}.stderr"
        command = [*wrap, sys.executable, "-m", "meshnode", *pre, "--data", str(data), "run"]
        command += [*([] if mdns else ["--no-mdns"]), "--listen", f"127.0.0.1:{port}", *args]
        if "--web" not in args and "--no-web" not in args:
            command += ["--web", "127.0.0.1:0"]  # daemons of one test never share a page port
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**self.env, **env},
            )
        daemon = Daemon(name=name, data=data, port=port, proc=proc, stderr_path=stderr_path)
        self.daemons.append(daemon)
        return daemon

    def _wait_listening(self, daemon: Daemon) -> bool:
        """True once it listens; False if it lost a race for its port; else AssertionError."""

        def probe() -> bool | None:
            match = _LISTENING.search(daemon.stderr())
            if match:
                assert int(match.group(1)) == daemon.port
                return True
            if daemon.running():
                return None
            if _PORT_TAKEN in daemon.stderr():
                return False
            raise AssertionError(f"{daemon.name} exited {daemon.proc.returncode} at start")

        return wait_for(f"{daemon.name} to listen", probe, START_TIMEOUT_S)

    def stop_all(self) -> None:
        """SIGTERM every daemon still running, SIGKILL those that do not stop in time."""
        for daemon in self.daemons:
            if daemon.running():
                daemon.proc.send_signal(signal.SIGTERM)
        for daemon in self.daemons:
            try:
                daemon.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()

    def report(self) -> str:
        """Every daemon's exit status and stderr, for a failing test's output."""
        parts = []
        for d in self.daemons:
            parts.append(f"----- {d.name} pid {d.proc.pid} exit {d.proc.returncode} -----")
            parts.append(d.stderr())
        return "\n".join(parts)


def _test_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["XDG_CONFIG_HOME"] = str(root / "config")
    # An empty config of the test's own, so a box config in /etc is never read.
    (root / "config" / "meshnode").mkdir(parents=True, exist_ok=True)
    (root / "config" / "meshnode" / "meshnode.toml").write_text("")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def daemon_pool() -> Iterator[DaemonPool]:
    """A pool under a fresh /tmp root; on exit its daemons are stopped and the root removed."""
    root = Path(tempfile.mkdtemp(prefix="mn", dir="/tmp"))
    pool = DaemonPool(root=root, env=_test_env(root))
    try:
        yield pool
    finally:
        try:
            pool.stop_all()
            # pytest shows this captured output only when the test failed.
            print(pool.report())
        finally:
            shutil.rmtree(root, ignore_errors=True)

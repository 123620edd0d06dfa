"""Idle benchmark: what a daemon with nothing to do costs a solar-powered box.

Starts ``meshnode run`` with TCP listening, mDNS on and ``radios`` (2) ``serial`` radios on
ptys (the bench holds the far ends open and quiet), waits until it is listening, lets it settle for
``settle_s``, then measures ``idle_s`` of nothing happening; ``runs`` times, each with a
fresh daemon. The figures are the medians of the runs; ``runs`` lists each run's and
``spread`` the [min, max] of each figure:

* ``cpu_percent``: CPU time (user + system, all threads) over wall time, in percent of one
  core (goal <= 0.2; /proc counts in ticks of 10 ms, so one run of 60 s reads in steps of
  0.017);
* ``wakeups_per_s``: context switches of all its threads per second, voluntary and not
  (each is the process waking from a wait: timers, not polling loops; goal <= 1.0);
* ``rss_mb``: resident memory at the end (goal <= 60).

Figures come from /proc (Linux only). So that mDNS never multicasts on the real network
from a benchmark, the daemon runs in a fresh network namespace with only loopback up when
``unshare`` can make one (root, or unprivileged user namespaces); ``isolated`` says which.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["bench_idle"]

_LISTENING = re.compile(r"listening on ")
_START_TIMEOUT_S = 60.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_FIGURES = ("cpu_percent", "wakeups_per_s", "rss_mb")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """One daemon's figures over its idle span."""

    idle_s: float
    cpu_percent: float
    wakeups_per_s: float
    rss_mb: float
    threads: int
    isolated: bool


def bench_idle(
    idle_s: float = 60.0, settle_s: float = 5.0, runs: int = 3, radios: int = 2
) -> dict[str, object]:
    """Run the idle daemon ``runs`` times; the median figures, each run's and their spread."""
    each = [_one_run(idle_s, settle_s, radios) for _ in range(runs)]
    figures = {key: [float(getattr(run, key)) for run in each] for key in _FIGURES}
    return {
        "idle_s": round(statistics.median(run.idle_s for run in each), 1),
        "cpu_percent": round(statistics.median(figures["cpu_percent"]), 3),
        "wakeups_per_s": round(statistics.median(figures["wakeups_per_s"]), 2),
        "rss_mb": round(statistics.median(figures["rss_mb"]), 1),
        "threads": max(run.threads for run in each),
        "isolated": all(run.isolated for run in each),
        "radios": radios,
        "runs": [asdict(run) for run in each],
        "spread": {key: [min(values), max(values)] for key, values in figures.items()},
    }


def _one_run(idle_s: float, settle_s: float, radios: int) -> _Run:
    """One daemon, started, settled, measured over ``idle_s`` and stopped."""
    with tempfile.TemporaryDirectory(prefix="mn-idle-") as tmp:
        root = Path(tmp)
        masters, config = _radios(root, radios)
        try:
            proc, isolated = _start(root, config)
            try:
                _wait_listening(proc, root / "stderr")
                time.sleep(settle_s)
                before, t0 = _sample(proc.pid), time.monotonic()
                time.sleep(idle_s)
                after, t1 = _sample(proc.pid), time.monotonic()
            finally:
                proc.terminate()
                proc.wait(30)
        finally:
            for fd in masters:
                os.close(fd)
    span = t1 - t0
    return _Run(
        idle_s=round(span, 1),
        cpu_percent=round(100 * (after[0] - before[0]) / span, 3),
        wakeups_per_s=round((after[1] - before[1]) / span, 2),
        rss_mb=round(after[2] / (1 << 20), 1),
        threads=after[3],
        isolated=isolated,
    )


def _radios(root: Path, count: int) -> tuple[list[int], Path]:
    """``count`` pty pairs, and a config with a serial radio on each slave."""
    masters, tables = [], []
    for i in range(count):
        master, slave = os.openpty()
        masters.append(master)
        tables.append(
            f'[[radio]]\nname = "cable{i}"\ndriver = "serial"\nport = "{os.ttyname(slave)}"\n'
        )
        os.close(slave)  # the daemon opens it by name
    config = root / "meshnode.toml"
    config.write_text("\n".join(tables), encoding="utf-8")
    return masters, config


def _start(root: Path, config: Path) -> tuple[subprocess.Popen[bytes], bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    for key in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "INVOCATION_ID"):
        env.pop(key, None)
    env["XDG_CONFIG_HOME"] = str(root / "xdg")
    data = root / "data"
    argv = [sys.executable, "-m", "meshnode", "--data", str(data), "--config", str(config)]
    subprocess.run([*argv, "init"], env=env, check=True, capture_output=True)
    run = [*argv, "run", "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0"]
    isolated = _can_isolate()
    if isolated:
        # A new network namespace with loopback up: mDNS runs, and stays on this machine.
        script = 'ip link set lo up 2>/dev/null || true; exec "$@"'
        run = ["unshare", *_unshare_flags(), "--", "sh", "-c", script, "sh", *run]
    with (root / "stderr").open("wb") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, isolated


def _unshare_flags() -> list[str]:
    return ["--net"] if os.geteuid() == 0 else ["--net", "--map-root-user"]


def _can_isolate() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", *_unshare_flags(), "--", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _wait_listening(proc: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = stderr.read_text(encoding="utf-8", errors="replace")
        if _LISTENING.search(text):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    raise RuntimeError("the daemon did not start listening within 60 s")


def _daemon_pid(pid: int) -> int:
    """The meshnode process: ``pid`` itself, or its child when started through unshare."""
    for _ in range(50):
        children = Path(f"/proc/{pid}/task/{pid}/children")
        kids = children.read_text().split() if children.exists() else []
        if not kids:
            return pid
        pid = int(kids[0])
    return pid


def _sample(pid: int) -> tuple[float, int, int, int]:
    """CPU seconds, context switches (all threads), RSS bytes and thread count."""
    pid = _daemon_pid(pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
    switches = 0
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    for task in tasks:
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return cpu_s, switches, rss_pages * os.sysconf("SC_PAGE_SIZE"), len(tasks)

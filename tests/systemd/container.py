"""A Debian booted in a systemd-nspawn container, for tests that need systemd as PID 1.

The root filesystem is made once by mmdebstrap and cached outside the repository
(``$MESHNODE_TEST_CACHE``, default /var/cache/meshnode-test/), keyed by suite and package
list and rebuilt after two weeks. Each boot runs on an overlay of it, so nothing a test does
reaches the cache. The container has only a loopback network (``--private-network``) and
gets meshnode as wheels made outside it, so it needs no network at all. Commands run inside
through ``nsenter`` into the container's namespaces: no systemd-machined is needed, and the
host's PID 1 need not be systemd. The tests skip with the reason when the machine cannot
build or boot a container; the container is always powered off, even when a test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "PACKAGES",
    "SUITES",
    "Container",
    "Suite",
    "booted",
    "cannot_boot_reason",
    "loop_image",
    "prepare_meshnode",
    "rootfs",
]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MESHNODE_TEST_CACHE", "/var/cache/meshnode-test"))
MIRROR = os.environ.get("MESHNODE_TEST_MIRROR", "http://deb.debian.org/debian")
# What a village box has, plus udev, exFAT tools and exfat-fuse for the USB drive test.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "udev",
    "python3",
    "python3-venv",
    "iproute2",
    "util-linux",
    "mount",
    "make",
    "exfatprogs",
    "dosfstools",
    "exfat-fuse",
    "fuse3",
)
_ROOTFS_MAX_AGE_S = 14 * 24 * 3600  # then rebuilt, to pick up Debian's updates
_BUILD_TIMEOUT_S = 900
_BOOT_TIMEOUT_S = 120
_POWEROFF_TIMEOUT_S = 30
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SOURCE_DIR = "/root/meshnode"  # where the checkout is copied inside the container
WHEEL_DIR = "/root/wheels"
_names = itertools.count()


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """A Debian release the units are booted on."""

    name: str
    python: str  # its python3, which the wheels are for
    glibc_minor: int  # its glibc 2.N: the newest manylinux wheel it takes


SUITES = (
    Suite(name="bookworm", python="3.11", glibc_minor=36),  # systemd 252
    Suite(name="trixie", python="3.13", glibc_minor=41),  # systemd 257
)


def cannot_boot_reason() -> str | None:
    """Why this machine cannot build and boot a container, or None when it can try."""
    if os.geteuid() != 0:
        return "booting a container needs root (systemd-nspawn, mmdebstrap, loop devices)"
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("mmdebstrap", "mmdebstrap"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package}; .ci/run does)"
    if not Path("/proc/self/ns/cgroup").exists():
        return "the kernel has no cgroup namespaces, which systemd-nspawn needs"
    cgroups = Path("/sys/fs/cgroup")
    if not (cgroups / "cgroup.controllers").exists() and not (cgroups / "systemd").is_dir():
        return "no cgroup hierarchy systemd can use is mounted at /sys/fs/cgroup"
    return None


def _skip(reason: str, output: str = "") -> NoReturn:
    tail = "\n".join(output.strip().splitlines()[-15:])
    pytest.skip(f"{reason}\n{tail}" if tail else reason)


def rootfs(suite: Suite) -> Path:
    """The cached root filesystem of ``suite``, built first when missing or stale."""
    key = json.dumps([suite.name, MIRROR, "apt", sorted(PACKAGES)]).encode()
    path = CACHE / f"rootfs-{suite.name}-{hashlib.sha256(key).hexdigest()[:12]}"
    stamp = path.with_name(path.name + ".built")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{suite.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest may be building the same one
        if stamp.exists() and time.time() - stamp.stat().st_mtime < _ROOTFS_MAX_AGE_S:
            return path
        stamp.unlink(missing_ok=True)
        for old in CACHE.glob(f"rootfs-{suite.name}-*"):
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        done = subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=apt",
                f"--include={','.join(PACKAGES)}",
                suite.name,
                str(path),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            _skip(f"mmdebstrap could not build a {suite.name} rootfs", done.stderr)
        stamp.touch()
    return path


def _copy_source(dest: Path) -> None:
    """The checkout as it is now (uncommitted work too), without .git, .venv and caches."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache")
        shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _platforms(suite: Suite) -> list[str]:
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(suite.glibc_minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux1_{machine}", f"linux_{machine}"]


def prepare_meshnode(suite: Suite, root: Path) -> None:
    """Copy the checkout into the container's /root/meshnode and its wheels into /root/wheels.

    The meshnode wheel is built from the copy (the checkout is not written to); its
    dependencies and setuptools (for ``pip install .``) are fetched for the suite's Python.
    """
    source = root / _SOURCE_DIR.lstrip("/")
    wheels = root / WHEEL_DIR.lstrip("/")
    _copy_source(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        _skip("could not build the meshnode wheel outside the container", built.stderr)
    for leftover in ("build", "meshnode.egg-info"):
        shutil.rmtree(source / leftover, ignore_errors=True)
    (wheel,) = wheels.glob("meshnode-*.whl")
    platforms = [arg for tag in _platforms(suite) for arg in ("--platform", tag)]
    fetched = subprocess.run(
        [
            *pip,
            "download",
            "--only-binary=:all:",
            f"--python-version={suite.python}",
            "--implementation=cp",
            *platforms,
            "-d",
            str(wheels),
            str(wheel),
            "setuptools>=77",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if fetched.returncode != 0:
        _skip(
            f"could not fetch meshnode's dependencies as Python {suite.python} wheels",
            fetched.stderr,
        )


@contextlib.contextmanager
def loop_image(directory: Path, size_mib: int = 64) -> Iterator[str | None]:
    """A loop device holding a fresh exFAT image, detached after; None when impossible."""
    mkfs = shutil.which("mkfs.exfat") or shutil.which("mkfs.exfat", path="/usr/sbin:/sbin")
    if mkfs is None or not Path("/dev/loop-control").exists():
        yield None
        return
    image = directory / "usb.img"
    with image.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    subprocess.run([mkfs, "-L", "STICK", str(image)], capture_output=True, check=True, timeout=60)
    attached = subprocess.run(
        ["losetup", "--find", "--show", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if attached.returncode != 0:
        yield None
        return
    device = attached.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=60, check=False)


class Container:
    """A booted container; commands run inside it with a clean environment."""

    def __init__(self, name: str, leader: int, console: Path) -> None:
        self.name = name
        self.leader = leader
        self.console = console

    def run(
        self,
        *argv: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the container (as ``user`` through runuser); raise on failure."""
        command = ["runuser", "-u", user, "--", *argv] if user else list(argv)
        variables = [
            f"{k}={v}" for k, v in {"PATH": _PATH, "LANG": "C.UTF-8", **(env or {})}.items()
        ]
        done = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--all", "env", "-i", *variables, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode} in {self.name}:\n"
                f"{done.stdout}{done.stderr}\n--- journal ---\n{self.journal(lines=40)}"
            )
        return done

    def sh(self, script: str) -> str:
        """Run a shell script as root; its stdout."""
        return self.run("sh", "-euc", script).stdout

    def journal(self, unit: str | None = None, *, lines: int = 200) -> str:
        """The journal of this boot (of one unit), for assertions and their messages."""
        which = ["-u", unit] if unit else []
        done = subprocess.run(
            [
                "nsenter",
                f"--target={self.leader}",
                "--all",
                "journalctl",
                "-b",
                "--no-pager",
                "-n",
                str(lines),
                *which,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` of ``properties``, as a dict."""
        flags = [f"--property={p}" for p in properties]
        text = self.run("systemctl", "show", *flags, unit).stdout
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def wait_for(self, what: str, probe: Callable[[], bool], timeout_s: float = 30) -> None:
        """Poll ``probe`` until true; fail with ``what`` and the journal otherwise."""
        deadline = time.monotonic() + timeout_s
        while not probe():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.journal(lines=60)}")
            time.sleep(0.25)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _leader(process: subprocess.Popen[bytes], console: Path) -> int:
    """The container's PID 1 as the host sees it; skip when nspawn gives up."""
    deadline = time.monotonic() + _BOOT_TIMEOUT_S
    own_ns = Path("/proc/self/ns/pid").readlink()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _skip(
                "systemd-nspawn could not boot a container here",
                console.read_text("utf-8", "replace"),
            )
        for child in _children(process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{child}/ns/pid").readlink() != own_ns:
                    return child
        time.sleep(0.1)
    raise AssertionError(f"no container init appeared\n{console.read_text('utf-8', 'replace')}")


def _wait_booted(box: Container) -> None:
    deadline = time.monotonic() + _BOOT_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        done = box.run(
            "systemctl", "is-system-running", "--wait", check=False, timeout=_BOOT_TIMEOUT_S
        )
        state = done.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)  # too early: PID 1 is not answering yet
    raise AssertionError(f"{box.name} did not finish booting ({state})\n{box.journal()}")


def _overlay(lower: Path, directory: Path) -> Path:
    """A writable view of ``lower`` (overlayfs; a copy where that cannot be mounted)."""
    merged, upper, work = (directory / n for n in ("root", "upper", "work"))
    for d in (merged, upper, work):
        d.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if mounted.returncode != 0:
        merged.rmdir()
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(lower), str(merged)], check=True, timeout=300
        )
    return merged


def _power_off(process: subprocess.Popen[bytes], leader: int | None) -> None:
    """systemd's poweroff signal to the container's PID 1, then force when it hangs."""
    if leader is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leader, signal.SIGRTMIN + 4)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_POWEROFF_TIMEOUT_S)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(leader, signal.SIGKILL)  # PID 1 of its namespace: takes all with it
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
            return
    process.kill()
    process.wait(10)


@contextlib.contextmanager
def booted(
    suite: Suite,
    directory: Path,
    *,
    prepare: Callable[[Path], None],
    devices: Sequence[str] = (),
) -> Iterator[Container]:
    """Boot ``suite`` on an overlay in ``directory`` with ``devices`` bound in; power off after.

    ``prepare`` writes into the root before boot. /sys is writable in the container so
    that udevd runs there (it handles the bound loop device through the shipped rule).
    """
    lower = rootfs(suite)
    root = _overlay(lower, directory)
    name = f"mn-{suite.name}-{os.getpid()}-{next(_names)}"
    console = directory / "console.log"
    process: subprocess.Popen[bytes] | None = None
    leader: int | None = None
    try:
        # udevd runs (see below) but must not re-announce every device of the host at boot.
        (root / "etc/systemd/system/systemd-udev-trigger.service").symlink_to("/dev/null")
        prepare(root)
        binds = [f"--bind={d}" for d in ("/dev/fuse", *devices) if Path(d).exists()]
        if Path("/run/systemd/system").is_dir():  # systemd on the host: a scope of its own
            scope = [f"--property=DeviceAllow={d} rwm" for d in ("/dev/fuse", *devices)]
        else:  # no systemd to ask for a scope: stay where we are
            scope = ["--keep-unit"]
        command = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={root}",
            f"--machine={name}",
            "--boot",
            "--private-network",
            "--register=no",
            "--console=read-only",
            *scope,
            *binds,
        ]
        env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1"}
        with console.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )
        leader = _leader(process, console)
        box = Container(name, leader, console)
        _wait_booted(box)
        yield box
    finally:
        if process is not None:
            _power_off(process, leader)
        if root.is_mount():
            subprocess.run(["umount", "--lazy", str(root)], check=False, timeout=60)
        shutil.rmtree(directory / "upper", ignore_errors=True)
        shutil.rmtree(directory / "work", ignore_errors=True)
        if not root.is_mount():
            shutil.rmtree(root, ignore_errors=True)

"""``meshnode doctor``: check a box's set-up and say how to fix what is wrong.

Each check returns Findings: a level (``ok``, ``warn``, ``error``), what was found, and for
anything not ok the command or step that fixes it. Errors make ``meshnode doctor`` exit 1.
Checks: the config, the data dir and secret key permissions, the identity, the daemon and
systemd service, each configured radio (present, permitted, answering), mDNS, free disk
against the caps, and the clock. A running daemon holds the radios' ports, so their state
is then taken from it instead of opening them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.errors import MeshnodeError
from meshnode.host.datadir import (
    DATA_DIR_MODE,
    SECRET_FILE_MODE,
    load_identity,
    load_network_key,
    network_path,
    secret_path,
    store_path,
)
from meshnode.radio import rnode, rylr
from meshnode.secure.identity import DEFAULT_NETWORK_KEY

if TYPE_CHECKING:
    from meshnode.host.config import Config, RadioSection

__all__ = ["Finding", "check_all", "check_config_error"]

_MIN_FREE_BYTES = 100 << 20  # below this a box cannot take in much at all
_LOW_FREE_BYTES = 1 << 30
_SANE_YEAR = 2025  # a Pi without network time boots in the past
_AS_OWNER = "run meshnode doctor as the owner of {path}, e.g. sudo -u meshnode meshnode doctor"
_PROBES = {  # a question each driver's device answers, and the answer
    "kiss": (
        rnode.detect_commands()[0],
        rnode.encode_command(rnode.RNodeCommand.DETECT, bytes((rnode.DETECT_RESPONSE,))),
    ),
    "rylr": (rylr.PROBE, b"+OK"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One result: ``level`` is "ok", "warn" or "error"; ``fix`` says what to do."""

    check: str
    level: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        """JSON-ready."""
        return asdict(self)


def _ok(check: str, message: str) -> Finding:
    return Finding(check=check, level="ok", message=message)


def check_config_error(where: str, error: Exception) -> Finding:
    """The finding for a config that does not load."""
    return Finding(
        check="config",
        level="error",
        message=f"{where}: {error}",
        fix="edit the file (`meshnode config --example` shows every key and its default)",
    )


def check_all(
    config: Config, config_path: str, data_dir: Path, daemon: dict[str, object] | None
) -> list[Finding]:
    """Every check; ``daemon`` is the running daemon's status, or None."""
    findings = [_ok("config", f"{config_path} loads")]
    findings += check_data_dir(data_dir)
    findings += check_service(daemon)
    radios = daemon.get("radios") if daemon else None
    for radio in config.radios:
        findings.append(check_radio(radio, radios if isinstance(radios, list) else None))
    findings.append(check_mdns(config, daemon))
    findings.append(check_disk(config, data_dir))
    findings.append(check_clock())
    return findings


def check_data_dir(data_dir: Path) -> list[Finding]:
    """The data dir exists and is ours alone; the secret and network keys are private."""
    try:
        mode = data_dir.stat().st_mode
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        return [
            Finding(
                check="data dir",
                level="error",
                message=f"{data_dir} does not exist" if missing else f"{data_dir}: {exc.strerror}",
                fix="meshnode init (or start the service: it makes one on first start)"
                if missing
                else _AS_OWNER.format(path=data_dir),
            )
        ]
    return [_check_dir_mode(data_dir, mode), _check_secret(data_dir), _check_network(data_dir)]


def _check_dir_mode(data_dir: Path, mode: int) -> Finding:
    """Others must not enter it, nor the group write to it (the unit's group may read)."""
    shown = f"mode {mode & 0o777:04o}"
    if not stat.S_ISDIR(mode):
        return Finding(
            check="data dir",
            level="error",
            message=f"{data_dir} is not a directory",
            fix="point --data or [node] data_dir at a directory (meshnode init makes one)",
        )
    if mode & 0o077 == 0:
        return _ok("data dir", f"{data_dir} ({shown})")
    fix = f"chmod {DATA_DIR_MODE:o} {data_dir}"
    if mode & 0o007 or mode & 0o020:
        who = "everyone" if mode & 0o007 else "its group"
        what = "written" if mode & 0o022 else "read"
        return Finding(
            check="data dir",
            level="error",
            message=f"{data_dir} can be {what} by {who} ({shown}): the store and its files "
            "are this node's alone",
            fix=fix,
        )
    return Finding(
        check="data dir",
        level="warn",
        message=f"{data_dir} can be read by its group ({shown})",
        fix=fix,
    )


def _exposed(check: str, path: Path, why: str) -> Finding | None:
    """An error when the key file at ``path`` is a regular file others may read or write."""
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            who = "everyone" if mode & 0o007 else "its group"
            return Finding(
                check=check,
                level="error",
                message=f"{path} can be read or written by {who} (mode {mode & 0o777:04o}): {why}",
                fix=f"chmod {SECRET_FILE_MODE:o} {path}",
            )
    return None


def _check_secret(data_dir: Path) -> Finding:
    path = secret_path(data_dir)
    exposed = _exposed("secret key", path, "anyone who reads it can post as this node")
    if exposed is not None:
        return exposed
    try:
        load_identity(data_dir)
    except MeshnodeError as exc:
        return Finding(check="secret key", level="error", message=str(exc), fix="meshnode init")
    except OSError as exc:  # doctor run by another user than the node's
        return Finding(
            check="secret key",
            level="error",
            message=f"cannot read {path}: {exc.strerror}",
            fix=_AS_OWNER.format(path=data_dir),
        )
    return _ok("secret key", f"{path} (mode 0600)")


def _check_network(data_dir: Path) -> Finding:
    path = network_path(data_dir)
    why = "anyone who reads it can join this private network"
    exposed = _exposed("network key", path, why)
    if exposed is not None:
        return exposed
    try:
        key = load_network_key(data_dir)
    except MeshnodeError as exc:
        return Finding(
            check="network key",
            level="error",
            message=str(exc),
            fix="it holds the 64 hex digits your community shares, readable by the node's "
            "user: restore it from them",
        )
    if key == DEFAULT_NETWORK_KEY:
        return _ok("network key", "the public default network")
    return _ok("network key", f"{path} (private network, mode 0600)")


def check_service(daemon: dict[str, object] | None) -> list[Finding]:
    """Is the daemon answering, and what does systemd say about the service?"""
    found = []
    if daemon is not None:
        found.append(
            _ok("daemon", f"running, pid {daemon.get('pid')}, up {daemon.get('uptime_s')} s")
        )
    else:
        found.append(
            Finding(
                check="daemon",
                level="warn",
                message="no daemon answers on the control socket",
                fix="sudo systemctl start meshnode (or run `meshnode run`)",
            )
        )
    state = _systemctl("is-active", "meshnode.service")
    if state is None:
        return found
    enabled = _systemctl("is-enabled", "meshnode.service") or "unknown"
    if state == "active":
        found.append(_ok("service", f"meshnode.service active, {enabled}"))
    elif enabled in ("not-found", "unknown") or "not-found" in state:
        found.append(
            Finding(
                check="service",
                level="warn",
                message="meshnode.service is not installed",
                fix="sudo make install-service (see README: Raspberry Pi install)",
            )
        )
    else:
        found.append(
            Finding(
                check="service",
                level="error",
                message=f"meshnode.service is {state} ({enabled})",
                fix="journalctl -u meshnode -n 50 shows why; then sudo systemctl restart meshnode",
            )
        )
    return found


def _systemctl(*args: str) -> str | None:
    """systemctl's answer, or None where there is no systemd to ask."""
    binary = shutil.which("systemctl")
    if binary is None or not Path("/run/systemd/system").is_dir():
        return None
    try:
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or done.stderr.strip() or "unknown").splitlines()[0]


def check_radio(radio: RadioSection, running: list[object] | None) -> Finding:
    """One [[radio]]: through the daemon when it runs, else by opening its port."""
    check = f"radio {radio.name}"
    if running is not None:
        status = next(
            (r for r in running if isinstance(r, dict) and r.get("name") == radio.name), None
        )
        return _radio_from_daemon(check, radio, status)
    is_url = "://" in radio.port
    if not is_url and not Path(radio.port).exists():
        return Finding(
            check=check,
            level="error",
            message=f"{radio.port} does not exist: the radio is unplugged or the port is wrong",
            fix="plug it in; `ls -l /dev/serial/by-id/` lists USB serial devices by name "
            "(for a HAT on the UART: enable it, see hardware/wiring.md)",
        )
    if not is_url and not os.access(radio.port, os.R_OK | os.W_OK):
        return Finding(
            check=check,
            level="error",
            message=f"no permission to open {radio.port}",
            fix="sudo usermod -aG dialout $USER, then log in again "
            "(the service's meshnode user is in dialout already)",
        )
    return _probe(check, radio)


def _radio_from_daemon(check: str, radio: RadioSection, status: object) -> Finding:
    if not isinstance(status, dict):
        return Finding(
            check=check,
            level="warn",
            message="configured, but the running daemon does not have it",
            fix="sudo systemctl restart meshnode (the daemon reads the config at start)",
        )
    if status.get("problem"):
        return Finding(
            check=check,
            level="error",
            message=f"{radio.port}: {status['problem']}",
            fix="check the radio's settings against firmware-notes/ for its driver",
        )
    if status.get("state") != "open":
        return Finding(
            check=check,
            level="error",
            message=f"{radio.port}: {status.get('state')}",
            fix="plug the radio in, or correct `port` (ls -l /dev/serial/by-id/)",
        )
    neighbours = status.get("neighbours")
    count = len(neighbours) if isinstance(neighbours, list) else 0
    return _ok(check, f"{radio.port} open ({radio.driver}), {count} neighbours heard")


def _probe(check: str, radio: RadioSection) -> Finding:
    from meshnode.links.serialport import probe

    question = _PROBES.get(radio.driver)
    try:
        answered = probe(radio.port, radio.baud, *question) if question else None
    except (OSError, ValueError) as exc:
        return Finding(
            check=check,
            level="error",
            message=f"cannot open {radio.port}: {exc}",
            fix="another program has it (only one may), or it is not a serial device",
        )
    if answered is None:
        return _ok(check, f"{radio.port} present ({radio.driver} devices cannot be asked)")
    if not answered:
        return Finding(
            check=check,
            level="error",
            message=f"{radio.port} does not answer as a {radio.driver} device would",
            fix=f"check driver, baud ({radio.baud}) and firmware: firmware-notes/ "
            f"has a page per radio",
        )
    return _ok(check, f"{radio.port} answers ({radio.driver})")


def check_mdns(config: Config, daemon: dict[str, object] | None) -> Finding:
    """mDNS on, working in the daemon, and an interface to use."""
    if not config.lan.mdns:
        return _ok("mdns", "off in the config ([lan] mdns = false): only static peers")
    if daemon is not None and not daemon.get("mdns"):
        return Finding(
            check="mdns",
            level="warn",
            message="the daemon runs without mDNS (--no-mdns, or zeroconf failed at start)",
            fix="journalctl -u meshnode | grep -i mdns",
        )
    try:
        import ifaddr
    except ImportError:
        return Finding(
            check="mdns", level="error", message="zeroconf is not installed", fix="pip install ."
        )
    names = [a.nice_name for a in ifaddr.get_adapters() if a.nice_name != "lo"]
    if not names:
        return Finding(
            check="mdns",
            level="warn",
            message="no network interface besides loopback: mDNS finds nobody yet",
            fix="connect Ethernet or Wi-Fi; meshnode picks up interfaces that appear later",
        )
    return _ok("mdns", f"on, interfaces {', '.join(sorted(names))}")


def check_disk(config: Config, data_dir: Path) -> Finding:
    """Free space against what the caps let the store grow to."""
    where = data_dir if data_dir.exists() else data_dir.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Finding(check="disk", level="error", message=f"{where}: {exc}")
    free, cap = usage.free, config.policy.global_cap_bytes
    used = _dir_bytes(store_path(data_dir))
    mib = f"{free >> 20} MiB free"
    if free < _MIN_FREE_BYTES:
        return Finding(
            check="disk",
            level="error",
            message=f"only {mib} on {where}",
            fix="free space, or set [policy] global_cap_bytes so the store stays small",
        )
    if cap and cap - used > free:
        return Finding(
            check="disk",
            level="warn",
            message=f"the store may grow by {(cap - used) >> 20} MiB to its cap, "
            f"but there is {mib}",
            fix="lower [policy] global_cap_bytes, or use a bigger card",
        )
    if not cap and free < _LOW_FREE_BYTES:
        return Finding(
            check="disk",
            level="warn",
            message=f"{mib} and no global cap",
            fix='set [policy] global_cap_bytes (e.g. "512MiB")',
        )
    capped = f"cap {cap >> 20} MiB" if cap else "no global cap"
    return _ok("disk", f"{mib}, store {used >> 20} MiB, {capped}")


def _dir_bytes(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in path.rglob("*"):
            with contextlib.suppress(OSError):
                total += entry.stat().st_size if entry.is_file() else 0
    return total


def check_clock(now: float | None = None) -> Finding:
    """A clock in the past stamps posts wrong (a Pi has no battery clock)."""
    now = time.time() if now is None else now
    year = time.gmtime(now).tm_year
    if year < _SANE_YEAR:
        return Finding(
            check="clock",
            level="error",
            message=f"the system clock says {year}: posts get wrong timestamps",
            fix="sudo timedatectl set-ntp true when there is network, else "
            "sudo date -s 'YYYY-MM-DD HH:MM'; an RTC module keeps it offline",
        )
    return _ok("clock", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)))

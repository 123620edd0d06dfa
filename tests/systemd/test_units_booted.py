"""The shipped units under a real systemd: Debian booted in a systemd-nspawn container.

``sudo make install-service`` runs inside it as on a Pi (from the checkout, with wheels
made outside: the container has only a loopback network), with udevd stopped, as in
containers where /sys is read-only. Then each test checks what only PID 1 shows: READY
and STATUS=, the watchdog kept and firing, the sandbox in force, the CLI as a member of
the meshnode group and as a stranger, a clean stop, exit 78 without a restart loop, a
listen address that appears after boot, the page on port 80 through the socket unit, and
the USB unit run by the shipped udev rule on a loop device. The tests share one booted
container per suite and run in order. Skipped with the reason where the machine cannot
boot a container (container.py).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.systemd.container import (
    SUITES,
    WHEEL_DIR,
    Container,
    Suite,
    booted,
    cannot_boot_reason,
    loop_image,
    prepare_meshnode,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MESHNODE = "/opt/meshnode/bin/meshnode"
CONFIG = "/etc/meshnode/meshnode.toml"
DROP_IN = "/run/systemd/system/meshnode.service.d/50-test.conf"
NOT_HERE = "192.0.2.1"  # TEST-NET-1: never on a real box; only bound to, never sent to


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """A booted container with meshnode installed by ``make install-service``."""

    container: Container
    usb: str | None  # the loop device bound in, None when the host has none to give
    installed: str  # what make install-service printed


@pytest.fixture(scope="module", params=SUITES, ids=lambda suite: suite.name)
def box(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    """One container per suite, meshnode installed; powered off after the module."""
    reason = cannot_boot_reason()
    if reason is not None:
        pytest.skip(reason)
    suite: Suite = request.param
    directory = tmp_path_factory.mktemp(f"boot-{suite.name}")
    with (
        loop_image(directory) as usb,
        booted(
            suite,
            directory,
            prepare=lambda root: prepare_meshnode(suite, root),
            devices=[usb] if usb else [],
        ) as container,
    ):
        yield Box(container=container, usb=usb, installed=_install(container))


def _install(c: Container) -> str:
    """make install-service with udevd stopped (issue 15, point 2), then udevd started."""
    c.run(
        "systemctl",
        "stop",
        "systemd-udevd-control.socket",
        "systemd-udevd-kernel.socket",
        "systemd-udevd.service",
    )
    done = c.run(
        "make",
        "-C",
        "/root/meshnode",
        "install-service",
        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEEL_DIR},
        timeout=600,
    )
    c.run("systemctl", "start", "systemd-udevd.service")
    return done.stdout + done.stderr


def _main(c: Container) -> dict[str, str]:
    return c.show(
        "meshnode.service",
        "ActiveState",
        "SubState",
        "Result",
        "MainPID",
        "NRestarts",
        "StatusText",
        "ExecMainStatus",
        "UnitFileState",
    )


def _active(c: Container) -> bool:
    return _main(c)["ActiveState"] == "active"


def _restart(c: Container) -> dict[str, str]:
    c.run("systemctl", "reset-failed", "meshnode.service", check=False)
    c.run("systemctl", "restart", "meshnode.service")
    c.wait_for("meshnode.service active", lambda: _active(c))
    return _main(c)


@contextlib.contextmanager
def _drop_in(c: Container, text: str) -> Iterator[None]:
    """A runtime drop-in for meshnode.service, removed (and the service restarted) after."""
    c.sh(f"mkdir -p {DROP_IN.rsplit('/', 1)[0]}; printf '[Service]\\n{text}\\n' > {DROP_IN}")
    c.run("systemctl", "daemon-reload")
    try:
        yield
    finally:
        c.run("rm", "-f", DROP_IN)
        c.run("systemctl", "daemon-reload")
        _restart(c)


@contextlib.contextmanager
def _config(c: Container, text: str) -> Iterator[None]:
    """Another /etc/meshnode/meshnode.toml; the installed one is put back after."""
    c.run("cp", CONFIG, f"{CONFIG}.installed")
    c.sh(f"cat > {CONFIG} <<'EOF'\n{text}\nEOF")
    try:
        yield
    finally:
        c.run("mv", f"{CONFIG}.installed", CONFIG)
        _restart(c)


def test_install_service_installs_and_starts_even_without_udevd(box: Box) -> None:
    assert "udevd is not running" in box.installed, box.installed
    assert "meshnode is running" in box.installed, box.installed
    unit = _main(box.container)
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running"), unit
    assert unit["UnitFileState"] == "enabled"
    assert unit["NRestarts"] == "0"
    # Type=notify: active means READY=1 came; STATUS= says where it listens.
    assert unit["StatusText"].startswith("listening on 0.0.0.0:7420"), unit
    web = box.container.show("meshnode-web.socket", "ActiveState", "UnitFileState")
    assert web == {"ActiveState": "active", "UnitFileState": "enabled"}


def test_the_sandbox_is_in_force_and_cpython_runs_in_it(box: Box) -> None:
    c = box.container
    pid = _main(c)["MainPID"]
    status = dict(
        line.split(":", 1) for line in c.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    )
    assert status["Seccomp"].strip() == "2"  # the system call filter
    assert status["CapEff"].strip() == "0" * 16
    assert status["CapBnd"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"
    # PyNaCl made the identity; zeroconf lists the interfaces over netlink and advertises.
    c.wait_for("mDNS advertising", lambda: "advertising" in c.journal("meshnode.service"))
    journal = c.journal("meshnode.service")
    assert "created identity" in journal
    assert "Traceback" not in journal, journal


def test_the_page_answers_on_port_80_through_the_socket_unit(box: Box) -> None:
    fetch = (
        "import urllib.request as u; r = u.urlopen('http://127.0.0.1/', timeout=20); "
        "print(r.status); print(r.read().decode()[:300])"
    )
    page = box.container.run("python3", "-c", fetch).stdout
    assert page.startswith("200\n"), page
    assert "<html" in page.lower(), page


def test_the_cli_works_for_the_group_and_tells_others_how_to_join(box: Box) -> None:
    c = box.container
    c.run("useradd", "--create-home", "--groups", "meshnode", "keeper")
    c.run("useradd", "--create-home", "visitor")
    status = c.run(MESHNODE, "status", user="keeper").stdout
    assert "daemon   pid" in status, status
    posted = c.run(MESHNODE, "post", "hello from the keeper", user="keeper")
    assert posted.returncode == 0
    denied = c.run(MESHNODE, "status", user="visitor", check=False)
    assert denied.returncode == 1, denied
    assert "sudo usermod -aG meshnode" in denied.stderr, denied.stderr
    assert "Traceback" not in denied.stderr


def test_the_watchdog_is_kept_and_fires_on_a_frozen_daemon(box: Box) -> None:
    c = box.container
    with _drop_in(c, "WatchdogSec=2s\\nRestartSec=1s"):
        before = _restart(c)
        time.sleep(5)  # past WatchdogSec twice over: the pings must keep it alive
        kept = _main(c)
        assert (kept["ActiveState"], kept["MainPID"]) == ("active", before["MainPID"]), kept
        assert kept["NRestarts"] == before["NRestarts"]
        c.run("systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "meshnode.service")
        c.wait_for(
            "a restart after the watchdog",
            lambda: _main(c)["NRestarts"] != before["NRestarts"] and _active(c),
        )
        assert _main(c)["MainPID"] != before["MainPID"]
        journal = c.journal("meshnode.service")
        assert "Watchdog timeout" in journal, journal
        assert "Failed with result 'watchdog'" in journal, journal


def test_stop_is_clean(box: Box) -> None:
    c = box.container
    _restart(c)
    c.run("systemctl", "stop", "meshnode.service")
    unit = _main(c)
    assert (unit["ActiveState"], unit["Result"], unit["ExecMainStatus"]) == (
        "inactive",
        "success",
        "0",
    ), unit
    journal = c.journal("meshnode.service", lines=30)
    assert "SIGTERM received" in journal, journal
    assert "Traceback" not in journal, journal
    _restart(c)


def test_a_bad_config_exits_78_once_without_a_restart_loop(box: Box) -> None:
    c = box.container
    with _drop_in(c, "RestartSec=1s"), _config(c, '[lan]\nlisten = "not an address"'):
        c.run("systemctl", "restart", "meshnode.service", check=False)
        c.wait_for("meshnode.service failed", lambda: _main(c)["ActiveState"] == "failed")
        time.sleep(3)  # three times RestartSec: a restart would have come by now
        unit = _main(c)
        assert (unit["ActiveState"], unit["ExecMainStatus"]) == ("failed", "78"), unit
        assert unit["NRestarts"] == "0", unit
        journal = c.journal("meshnode.service", lines=30)
        assert journal.count("bad config") == 1, journal


def test_a_listen_address_that_appears_after_boot_is_waited_for(box: Box) -> None:
    c = box.container
    installed = c.run("cat", CONFIG).stdout
    moved = installed.replace('listen = "0.0.0.0:7420"', f'listen = "{NOT_HERE}:7420"')
    assert moved != installed
    with _config(c, moved):
        unit = _restart(c)
        assert f"waiting for {NOT_HERE}" in unit["StatusText"], unit
        assert f"waiting for {NOT_HERE}:7420" in c.run(MESHNODE, "status").stdout
        c.run("ip", "address", "add", f"{NOT_HERE}/32", "dev", "lo")
        try:
            c.wait_for(
                f"listening on {NOT_HERE}",
                lambda: _main(c)["StatusText"].startswith(f"listening on {NOT_HERE}:7420"),
                timeout_s=45,
            )
            assert _main(c)["NRestarts"] == unit["NRestarts"]
        finally:
            c.run("ip", "address", "del", f"{NOT_HERE}/32", "dev", "lo", check=False)


def _mount_exfat(c: Container, device: str, where: str) -> str:
    """Mount ``device``; through exfat-fuse when the kernel lacks exFAT. Which one it used."""
    c.run("mkdir", "-p", where)
    if c.run("mount", "-t", "exfat", device, where, check=False).returncode == 0:
        return "kernel"
    # This kernel has no exFAT: mount(8) takes /usr/sbin/mount.exfat, here exfat-fuse.
    c.sh("ln -sf mount.exfat-fuse /usr/sbin/mount.exfat")
    mounted = c.run("mount", "-t", "exfat", device, where, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount exFAT in the container, kernel or FUSE: {mounted.stderr}")
    return "fuse"


def test_the_usb_unit_syncs_a_drive_from_the_udev_rule_and_unmounts_it(box: Box) -> None:
    if box.usb is None:
        pytest.skip("no loop device for the USB drive (needs /dev/loop-control and mkfs.exfat)")
    c = box.container
    name = box.usb.rsplit("/", 1)[1]
    unit = f"meshnode-usb@{name}.service"
    _restart(c)
    c.run(MESHNODE, "post", "carried by hand")
    _mount_exfat(c, box.usb, "/mnt/stick")
    c.run("mkdir", "/mnt/stick/meshnode")
    c.run("umount", "/mnt/stick")
    c.run("udevadm", "settle")
    # A loop device is not on USB: this rule (the test's only) says it is, before ours.
    rule = f'SUBSYSTEM=="block", KERNEL=="{name}", ENV{{ID_BUS}}="usb"'
    c.sh(f"mkdir -p /run/udev/rules.d; echo '{rule}' > /run/udev/rules.d/80-test-usb.rules")
    c.run("udevadm", "control", "--reload")
    # PID 1 started before udevd, and then leaves device events alone; re-executed, it
    # listens to udevd, as on a box where udevd starts early.
    c.run("systemctl", "daemon-reexec")
    c.run("udevadm", "trigger", "--action=add", "--settle", box.usb)
    done = f"meshnode: USB drive {name}: safe to remove"
    c.wait_for(f"{unit} to finish", lambda: done in c.journal(unit), timeout_s=60)
    c.wait_for(f"{unit} inactive", lambda: c.show(unit, "ActiveState")["ActiveState"] != "active")
    journal = c.journal(unit)
    assert c.show(unit, "Result")["Result"] == "success", journal
    assert re.search(r"to drive +[1-9]\d* entries", journal), journal  # the posts
    assert c.run("findmnt", f"/run/meshnode-usb/{name}", check=False).returncode == 1
    _mount_exfat(c, box.usb, "/mnt/stick")
    try:
        carried = c.run("find", "/mnt/stick/meshnode", "-type", "f").stdout
    finally:
        c.run("umount", "/mnt/stick")
    assert carried.strip(), "nothing was written to the drive"

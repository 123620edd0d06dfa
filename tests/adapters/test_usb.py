"""``meshnode usb`` as a user runs it: through a running daemon, and on a real exFAT drive."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.daemons import daemon_pool, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def test_usb_sync_goes_through_the_running_daemon_and_on_to_its_peers(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    c, _ = pool.init("c")
    pool.ok(b, "follow", a_id)
    pool.ok(c, "follow", a_id)
    pool.ok(a, "post", "-", stdin="carried on a stick\nand another\n")
    drive = pool.root / "stick"
    drive.mkdir()
    pool.ok(a, "usb", "init", str(drive), "--cap", "4MiB")
    assert pool.json(a, "usb", "sync", str(drive))["to_drive"] == 2
    daemon_b = pool.start("b")
    pool.start("c", "--peer", daemon_b.address)
    summary = pool.json(b, "usb", "sync", str(drive))  # the daemon holds b's store
    assert summary["from_drive"] == 2
    assert summary["rejected"] == 0
    # The daemon sent what came off the drive on to its LAN peer.
    wait_for("C to get A's posts from B", lambda: len(pool.feed(c, a_id)) == 2 or None, 30)
    status = pool.json(b, "status")
    last = status["last_usb_sync"]
    assert isinstance(last, dict)
    assert last["from_drive"] == 2


def test_another_networks_drive_is_refused_by_the_command(pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    other, _ = pool.init("other", "--new-network")
    drive = pool.root / "stick"
    drive.mkdir()
    pool.ok(other, "usb", "init", str(drive))
    done = pool.cli(a, "usb", "sync", str(drive))
    assert done.returncode == 1
    assert "carries network" in done.stderr
    assert "Traceback" not in done.stderr


def test_auto_leaves_a_drive_without_the_folder_alone(pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    drive = pool.root / "holiday-photos"
    drive.mkdir()
    out = pool.ok(a, "usb", "sync", "--auto", str(drive))
    assert "left alone" in out
    assert list(drive.iterdir()) == []


# -- exFAT through FUSE ------------------------------------------------------------------


def _tools() -> dict[str, str]:
    """The exFAT tools by name, or skip the test naming what is missing."""
    found = {t: shutil.which(t) for t in ("mkfs.exfat", "mount.exfat-fuse", "fusermount")}
    found["losetup"] = shutil.which("losetup") or shutil.which("losetup", path="/usr/sbin:/sbin")
    missing = [t for t, path in found.items() if path is None]
    if missing:
        pytest.skip(f"exFAT test: {', '.join(missing)} not installed (exfatprogs, exfat-fuse)")
    if not Path("/dev/fuse").exists() or os.geteuid() != 0:
        pytest.skip("exFAT test: needs /dev/fuse and root (loop devices)")
    return {t: str(path) for t, path in found.items()}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def exfat_mount() -> Iterator[Path]:
    """A 64 MiB exFAT image on a loop device, mounted with exfat-fuse; skip if impossible."""
    tools = _tools()
    with tempfile.TemporaryDirectory(prefix="mn-exfat-") as tmp:
        image, mountpoint = Path(tmp) / "stick.img", Path(tmp) / "mnt"
        mountpoint.mkdir()
        with image.open("wb") as f:
            f.truncate(64 << 20)
        assert _run(tools["mkfs.exfat"], "-L", "MESHSYNC", str(image)).returncode == 0
        attach = _run(tools["losetup"], "-f", "--show", str(image))
        if attach.returncode != 0:
            pytest.skip(f"exFAT test: no loop device ({attach.stderr.strip()})")
        loop = attach.stdout.strip()
        try:
            mounted = _run(tools["mount.exfat-fuse"], loop, str(mountpoint))
            if mounted.returncode != 0:
                pytest.skip(f"exFAT test: exfat-fuse cannot mount ({mounted.stderr.strip()})")
            try:
                yield mountpoint
            finally:
                _run(tools["fusermount"], "-u", str(mountpoint))
        finally:
            _run(tools["losetup"], "-d", loop)


def test_a_real_exfat_drive_carries_feeds_both_ways(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "from a")
    pool.ok(b, "post", "from b")
    with exfat_mount() as stick:
        pool.ok(a, "usb", "init", str(stick))
        pool.ok(a, "usb", "sync", str(stick))
        assert pool.json(b, "usb", "sync", str(stick))["from_drive"] == 2
        assert pool.json(a, "usb", "sync", str(stick))["from_drive"] == 2
        names = sorted(p.name for p in (stick / "meshnode").rglob("*"))
        assert "manifest.json" in names
        assert "README.txt" in names
        status = pool.json(a, "usb", "status", str(stick))
        assert status["damaged"] == []
        # Pulled out while the manifest was written: cut it on the real filesystem.
        manifest = stick / "meshnode" / "manifest.json"
        manifest.write_bytes(manifest.read_bytes()[:100])
        pool.ok(b, "post", "after the pull")
        repaired = pool.json(b, "usb", "sync", str(stick))
        damaged = repaired["damaged"]
        assert isinstance(damaged, list)
        assert any(str(d).startswith("manifest.json") for d in damaged)
        assert repaired["to_drive"] == 1
        assert pool.json(a, "usb", "sync", str(stick))["from_drive"] == 1
    assert len(pool.feed(b, a_id)) == 2
    assert len(pool.feed(a, b_id)) == 3

"""``meshnode usb init|status|sync`` in-process, without a daemon (tests/adapters/test_usb.py
runs them through one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.test_cli import Cli


def _id(cli: Cli, data: Path) -> str:
    return str(cli("whoami", "--json", data=data).json()["id"])


def test_init_sync_status_and_the_last_sync_in_status(cli: Cli, home: Path) -> None:
    a, b, stick = home / "a", home / "b", home / "stick"
    stick.mkdir()
    cli("init", data=a)
    cli("init", data=b)
    cli("follow", _id(cli, a), data=b)
    cli("post", "-", stdin="one\ntwo\nthree\n", data=a)
    init = cli("usb", "init", str(stick), "--cap", "8MiB", "--json", data=a)
    assert init.code == 0
    assert init.json()["cap_bytes"] == 8 << 20
    assert (stick / "meshnode" / "README.txt").exists()

    out = cli("usb", "sync", str(stick), data=a)
    assert out.code == 0
    assert "to drive    3 entries" in out.out
    assert "safe to remove" in out.out
    summary = cli("usb", "sync", str(stick), "--json", data=b).json()
    assert (summary["from_drive"], summary["rejected"], summary["to_drive"]) == (3, 0, 1)
    assert summary["free_bytes"] > 0

    status = cli("usb", "status", str(stick), "--json", data=a).json()
    assert status["feeds"] == 2
    assert status["carried"][_id(cli, a)] == {"first": 1, "latest": 3}
    assert set(status["boxes"]) == {_id(cli, a), _id(cli, b)}
    text = cli("usb", "status", str(stick), data=a).out
    assert "carries  4 entries of 2 feeds" in text
    assert "last visit" in text

    node_status = cli("status", "--json", data=b).json()
    assert node_status["last_usb_sync"]["from_drive"] == 3
    assert node_status["last_usb_sync"]["drive"] == str(stick.resolve())
    assert "usb      last sync" in cli("status", data=b).out


def test_a_full_drive_says_so_and_how_to_make_room(cli: Cli, home: Path) -> None:
    stick = home / "stick"
    stick.mkdir()
    cli("init")
    cli("post", "-", stdin="".join(f"post number {n} " + "x" * 200 + "\n" for n in range(60)))
    cli("usb", "init", str(stick), "--cap", "4KiB")
    out = cli("usb", "sync", str(stick))
    assert out.code == 0
    assert "drive full" in out.out
    assert "--cap SIZE" in out.out
    summary = cli("usb", "sync", str(stick), "--json").json()
    assert summary["full"] == "cap"
    assert summary["left_behind"] > 0


def test_usb_errors_are_one_clear_line(cli: Cli, home: Path) -> None:
    cli("init")
    missing = cli("usb", "sync", str(home / "nowhere"))
    assert missing.code == 1
    assert "no meshnode/ folder" in missing.err
    assert "meshnode usb init" in missing.err
    bad_cap = cli("usb", "init", str(home), "--cap", "lots")
    assert bad_cap.code == 1
    assert "--cap" in bad_cap.err
    assert "Traceback" not in missing.err + bad_cap.err


def test_auto_leaves_other_drives_alone(cli: Cli, home: Path) -> None:
    stick = home / "holiday-photos"
    stick.mkdir()
    cli("init")
    out = cli("usb", "sync", "--auto", str(stick))
    assert out.code == 0
    assert "left alone" in out.out
    assert list(stick.iterdir()) == []

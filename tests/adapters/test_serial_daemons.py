"""Two `meshnode run` daemons joined by a serial cable (a socat pty pair), driver "serial"."""

from __future__ import annotations

import shutil
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.daemons import daemon_pool, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

SYNC_TIMEOUT_S = 20.0


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _cable(root: Path) -> subprocess.Popen[bytes]:
    """A null-modem cable: two linked ptys, root/tty-a and root/tty-b."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("serial cable test: socat is not installed (apt install socat)")
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={root}/tty-a", f"pty,raw,echo=0,link={root}/tty-b"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ends = (root / "tty-a", root / "tty-b")
    wait_for("socat's ptys", lambda: all(end.exists() for end in ends) or None, 5)
    return proc


def start_on_cable(pool: DaemonPool, extra: str = "") -> None:
    """Start daemons a and b, each with one serial radio on its end of the cable."""
    for name in ("a", "b"):
        config = pool.root / f"{name}.toml"
        end = pool.root / f"tty-{name}"
        config.write_text(f'[[radio]]\ndriver = "serial"\nport = "{end}"\n{extra}')
        pool.start(name, pre=("--config", str(config)))


def _unplug(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(5)


def test_two_daemons_sync_both_ways_over_a_cable_and_survive_an_unplug(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "-", stdin="".join(f"cable {i}\n" for i in range(30)))
    cable = _cable(pool.root)
    try:
        start_on_cable(pool)
        wait_for(
            "B to hold A's posts", lambda: len(pool.feed(b, a_id)) == 31 or None, SYNC_TIMEOUT_S
        )
        pool.ok(b, "post", "and back")
        wait_for("A to hold B's post", lambda: len(pool.feed(a, b_id)) == 2 or None, SYNC_TIMEOUT_S)

        def radio_peers() -> list[object] | None:
            peers = pool.json(b, "peers")["peers"]
            assert isinstance(peers, list)
            return [p["link"] for p in peers] or None

        assert wait_for("B to list A as a radio neighbour", radio_peers, 10) == ["radio:radio0"]
        radios = pool.json(b, "peers")["radios"]
        assert isinstance(radios, list)
        assert [(r["name"], r["state"], r["serving"]) for r in radios] == [("radio0", "open", 0)]
        assert "radio    radio0 (serial, open)" in pool.ok(b, "peers")

        _unplug(cable)  # the cable is pulled: both daemons keep running
        pool.ok(a, "post", "while unplugged")
        cable = _cable(pool.root)  # and plugged back in
        wait_for(
            "B to get the post made while unplugged",
            lambda: len(pool.feed(b, a_id)) == 32 or None,
            30,
        )
    finally:
        pool.stop_all()
        _unplug(cable)
    for data in (a, b):
        assert pool.json(data, "check")["ok"] is True
    report = pool.report()
    assert (
        "device disconnected" in report or "Input/output error" in report or "cannot open" in report
    )

"""Two `meshnode run` daemons on a cable throttled to 9600 baud: every entry crosses once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.adapters.test_serial_daemons import start_on_cable
from tests.daemons import daemon_pool, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.daemons import DaemonPool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAUD = 9600
ENTRIES = 30  # about 6 s of wire time
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _cable(root: Path, drop_bytes: float = 0.0) -> subprocess.Popen[str]:
    """The project's throttled cable (meshnode/testing/cable.py) in its own process."""
    args = ["--baud", str(BAUD), "--link-a", str(root / "tty-a"), "--link-b", str(root / "tty-b")]
    args += ["--drop-bytes", str(drop_bytes), "--seed", "5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshnode.testing.cable", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ends = (root / "tty-a", root / "tty-b")
    wait_for("the cable's ptys", lambda: all(end.exists() for end in ends) or None, 10)
    return proc


def _unplug(proc: subprocess.Popen[str]) -> dict[str, dict[str, int]]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    counts: dict[str, dict[str, int]] = json.loads(out) if out else {}
    return counts


def _radio(pool: DaemonPool, data: Path) -> dict[str, object]:
    radios = pool.json(data, "peers")["radios"]
    assert isinstance(radios, list)
    assert len(radios) == 1
    radio = radios[0]
    assert isinstance(radio, dict)
    return radio


def _sync(pool: DaemonPool, drop_bytes: float) -> tuple[int, int, dict[str, dict[str, int]]]:
    """A posts ENTRIES texts of 100 random characters, B follows A over the cable; returns
    the entries both put on the wire, B's entries held, and the cable's counts."""
    a, a_id = pool.init("a")
    b, _ = pool.init("b")
    pool.ok(b, "follow", a_id)
    rng = random.Random(7)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(100)) for _ in range(ENTRIES)]
    pool.ok(a, "post", "-", stdin="".join(f"{t}\n" for t in texts))
    cable = _cable(pool.root, drop_bytes)
    counts: dict[str, dict[str, int]] = {}
    try:
        start_on_cable(pool, f"baud = {BAUD}\n")
        wait_for("B to hold A's posts", lambda: len(pool.feed(b, a_id)) == ENTRIES or None, 90)
        sent = sum(int(str(_radio(pool, data)["entries_sent"])) for data in (a, b))
        held = len(pool.feed(b, a_id))
    finally:
        pool.stop_all()
        counts = _unplug(cable)
    return sent, held, counts


def test_daemons_on_a_9600_baud_cable_send_each_entry_once(pool: DaemonPool) -> None:
    sent, held, counts = _sync(pool, 0.0)
    assert held == ENTRIES
    assert sent / ENTRIES <= 1.02, (sent, counts)
    # Paced: A never had much more than a frame waiting for the wire.
    assert counts["a"]["most_queued_bytes"] <= 400
    assert counts["a"]["written_bytes"] <= 1.1 * 190 * ENTRIES


def test_daemons_on_a_cable_that_drops_one_byte_in_a_hundred_mend_it(pool: DaemonPool) -> None:
    sent, held, counts = _sync(pool, 0.01)
    assert held == ENTRIES
    assert counts["a"]["dropped_bytes"] > 0
    # Lost fragments are mended, not whole entries sent again (without: about 10 sends each).
    assert sent / ENTRIES <= 2.0, (sent, counts)

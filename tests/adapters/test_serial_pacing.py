"""A 1200-baud cable: writes are paced, every entry crosses once (real interface, ptys)."""

from __future__ import annotations

import pytest

from meshnode.bench.serial import run_serial

pytestmark = pytest.mark.integration


def test_a_slow_cable_carries_each_entry_once_at_the_wire_rate() -> None:
    result = run_serial(1200, entries=10, seed=3)  # about 20 s of wire time, warped
    assert result["delivered"] == 1.0
    assert result["transmissions_per_entry"] == 1.0
    # paced: never much more than one frame waits for the wire
    assert int(str(result["most_queued_bytes_a"])) <= 1.5 * float(str(result["framed_entry_bytes"]))
    assert float(str(result["wire_bytes_ratio"])) <= 1.1
    assert float(str(result["time_ratio"])) <= 1.3


def test_a_cable_that_drops_bytes_still_delivers() -> None:
    result = run_serial(9600, entries=20, seed=4, drop_bytes=0.001)  # a frame in 5 is hit
    assert result["delivered"] == 1.0
    assert float(str(result["transmissions_per_entry"])) <= 2.0

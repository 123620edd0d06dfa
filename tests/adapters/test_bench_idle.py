"""The idle benchmark measures a real daemon (TCP, mDNS, two serial radios on ptys)."""

from __future__ import annotations

import sys

import pytest

from meshnode.bench.idle import bench_idle

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def test_a_short_idle_run_reports_its_figures() -> None:
    result = bench_idle(idle_s=2.0, settle_s=1.0)
    assert result["radios"] == 2
    assert 1.9 < float(str(result["idle_s"])) < 5
    assert 0 <= float(str(result["cpu_percent"])) < 100
    assert float(str(result["wakeups_per_s"])) >= 0
    assert int(str(result["threads"])) >= 2  # the daemon itself (zeroconf has a thread)
    assert 10 < float(str(result["rss_mb"])) < 500

"""The idle benchmark measures a real daemon (TCP, mDNS, two serial radios on ptys)."""

from __future__ import annotations

import sys

import pytest

from meshnode.bench.idle import bench_idle

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

# Nothing is due in a daemon with no peers and no radios but mDNS upkeep: zeroconf's cache
# sweep every 10 s (about 2 context switches each) and its browse queries backing off to an
# hour. Polling the interfaces every 10 s (as before netlink) takes it to about 0.3; a
# ticker of 1 s, to over 1.
IDLE_WAKEUPS_PER_S = 0.25


def test_short_idle_runs_report_medians_each_run_and_the_spread() -> None:
    result = bench_idle(idle_s=1.0, settle_s=1.0, runs=3)
    assert result["radios"] == 2
    runs = result["runs"]
    assert isinstance(runs, list)
    assert len(runs) == 3
    spread = result["spread"]
    assert isinstance(spread, dict)
    for key in ("cpu_percent", "wakeups_per_s", "rss_mb"):
        values = sorted(float(run[key]) for run in runs)
        assert spread[key] == [values[0], values[2]]
        assert float(str(result[key])) == values[1]  # the median
    assert all(0.9 < float(run["idle_s"]) < 5 for run in runs)
    assert all(float(run["cpu_percent"]) < 100 for run in runs)
    assert int(str(result["threads"])) >= 1  # the loop (serial writes may add workers)
    assert 10 < float(str(result["rss_mb"])) < 500


@pytest.mark.slow
def test_an_idle_daemon_sleeps() -> None:
    result = bench_idle(idle_s=60.0, settle_s=5.0, runs=1, radios=0)
    assert float(str(result["wakeups_per_s"])) < IDLE_WAKEUPS_PER_S, result
    assert float(str(result["cpu_percent"])) < 0.2, result

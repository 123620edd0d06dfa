"""The benchmark runner and a small run of the reopen benchmark."""

from __future__ import annotations

import importlib
import json

import pytest

from meshnode.bench import BENCHMARKS
from meshnode.bench.__main__ import main
from meshnode.bench.reopen import bench_reopen


def fake_bench() -> dict[str, object]:
    """Stands in for a real benchmark."""
    return {"open_s": 0.5, "entries": 3}


def test_every_registered_benchmark_resolves() -> None:
    for target in BENCHMARKS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(["--json"], '{"open_s": 0.5, "entries": 3}\n'), ([], "open_s: 0.5\nentries: 3\n")],
)
def test_runner_prints_figures(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected: str,
) -> None:
    monkeypatch.setitem(BENCHMARKS, "fake", f"{__name__}:fake_bench")
    assert main(["fake", *flags]) == 0
    assert capsys.readouterr().out == expected


def test_small_reopen_run_reports_its_figures() -> None:
    figures = bench_reopen(entries=2000, feeds=20)
    assert figures["entries"] == 2000
    assert {"open_s", "rss_mb", "crash_open_s", "rebuild_s"} <= set(figures)
    json.dumps(figures)


def test_a_short_radio_run_delivers_within_the_duty_cycle() -> None:
    """Five entries through the emulator on the warped clock: figures are computed."""
    from meshnode.bench.radio import run_radio

    result = run_radio(entries=5, seed=1)
    assert result["delivered"] == 1.0
    assert 0 < float(str(result["air_bytes_per_entry"])) < 200
    assert float(str(result["duty_cycle_max"])) <= 0.01
    assert 0 < float(str(result["control_share"])) < 1


@pytest.mark.integration
def test_a_short_web_run_reports_every_figure_the_goals_name() -> None:
    """A small box, five phones, five posts: every post reaches every phone, none rejected."""
    from meshnode.bench.web import bench_web

    figures = bench_web(feeds=10, per_feed=10, phones=5, posts=5, interval_s=0.1)
    assert figures["posts_rejected"] == 0
    goals = ("page_p99_ms", "fanout_p99_ms", "rss_added_mb", "first_load_kb")
    assert all(isinstance(figures[name], float) for name in goals)
    assert 0 < float(str(figures["fanout_p99_ms"])) < 5000  # 5 s: a post never seen
    assert 10 < float(str(figures["first_load_kb"])) < 150
    json.dumps(figures)

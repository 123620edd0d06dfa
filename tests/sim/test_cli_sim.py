"""``meshnode sim`` prints a summary, or JSON, and is deterministic from its seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from meshnode.cli.main import main

if TYPE_CHECKING:
    import pytest


def test_sim_json_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sim", "--nodes", "8", "--degree", "3", "--seed", "7", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    del first["wall_s"], second["wall_s"]
    assert first == second
    assert first["delivered"] == 1.0
    assert first["nodes"] == 8


def test_sim_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "6", "--degree", "2", "--loss", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "delivered 100.0%" in out
    assert "6 nodes" in out


def test_sim_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "1"]) == 2
    assert "not within" in capsys.readouterr().err


def test_sim_is_deterministic_across_hash_seeds() -> None:
    """Set and dict order must not leak into the run (PYTHONHASHSEED differs per process)."""
    args = [sys.executable, "-m", "meshnode", "sim", "--nodes", "10", "--loss", "0.2", "--json"]
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        del result["wall_s"]
        runs.append(result)
    assert runs[0] == runs[1]

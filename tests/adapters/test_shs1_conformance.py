"""The language-independent shs1 test suite (npm ``shs1-test``) against our two adapters.

Each role runs 45 cases (20 honest peers, 25 faulty ones); the suite exits with the number
of failures. The package is installed at test time into a cache under the virtualenv (or
a pytest temp dir) and never committed; without node and npm, or offline, the tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PACKAGE = "shs1-test@1.1.1"
CASES_PER_ROLE = 45
SEED = "meshnode"
ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 300
SUITE_TIMEOUT_S = 300


def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Under the virtualenv when there is one, so reruns reuse the install."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "cache" / "shs1-test"
    return tmp_path_factory.mktemp("shs1-test")


def _install(prefix: Path) -> None:
    """npm install the suite into ``prefix``; skip the test with npm's words on failure."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (.ci/run installs them)")
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix)]
    command += ["--cache", str(prefix / "npm-cache"), PACKAGE]
    # Fail fast when offline instead of npm's default minute of retries.
    command += [
        "--fetch-retries=1",
        "--fetch-retry-mintimeout=2000",
        "--fetch-retry-maxtimeout=5000",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install {PACKAGE} timed out (offline?)")
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("npm error")]
        pytest.skip(f"npm install {PACKAGE} failed (offline?): {' | '.join(errors[:2])}")


@pytest.fixture(scope="module")
def suite_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding shs1testserver and shs1testclient."""
    bin_dir = _cache_dir(tmp_path_factory) / "node_modules" / ".bin"
    if not (bin_dir / "shs1testclient").exists():
        _install(bin_dir.parent.parent)
    if shutil.which("node") is None:
        pytest.skip("node is not installed (.ci/run installs it)")
    return bin_dir


def _adapter(tmp_path: Path, role: str) -> tuple[Path, Path]:
    """An executable wrapper (the suite runs a file) that counts its own runs."""
    runs = tmp_path / f"{role}.runs"
    script = tmp_path / f"shs1-{role}"
    script.write_text(
        "#!/bin/sh\n"
        f"echo run >> '{runs}'\n"
        f"exec '{sys.executable}' -m meshnode.testing.shs1test {role} \"$@\"\n"
    )
    script.chmod(0o755)
    return script, runs


def _run_suite(suite: Path, adapter: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORCE_COLOR": "0"}
    return subprocess.run(
        [str(suite), str(adapter), SEED],
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.parametrize("role", ["server", "client"])
def test_shs1_suite_passes(suite_bin: Path, tmp_path: Path, role: str) -> None:
    adapter, runs = _adapter(tmp_path, role)
    done = _run_suite(suite_bin / f"shs1test{role}", adapter)
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"{done.returncode} shs1 {role} case(s) failed\n{report}"
    assert "Passed the" in done.stdout, report
    assert len(runs.read_text().splitlines()) == CASES_PER_ROLE


@pytest.mark.parametrize(("role", "failures"), [("server", 35), ("client", 45)])
def test_shs1_suite_catches_a_wrong_network_key(
    suite_bin: Path, tmp_path: Path, role: str, failures: int
) -> None:
    # Control: our adapter on the wrong network. As a server it rejects every valid
    # msg1 (20 honest + 15 msg3-fault cases fail; the 10 msg1-fault cases still pass);
    # as a client every msg1 it writes is rejected. So the passes above mean the suite
    # really checked our bytes.
    broken = tmp_path / "wrong-network"
    broken.write_text(
        "#!/bin/sh\n"
        "shift\n"
        f"exec '{sys.executable}' -m meshnode.testing.shs1test {role} {'00' * 32} \"$@\"\n"
    )
    broken.chmod(0o755)
    done = _run_suite(suite_bin / f"shs1test{role}", broken)
    assert done.returncode == failures, done.stdout[-2000:]
    assert f"test failures: {failures}" in done.stdout

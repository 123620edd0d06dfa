"""The import-layer contract in pyproject.toml holds, and fails on a wrong arrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "importlinter", reason="import-linter is a dev dependency: make test installs it"
)

REPO = Path(__file__).resolve().parents[2]


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the meshnode package under ``tree`` with its pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "repo"
    shutil.copytree(
        REPO / "meshnode", tree / "meshnode", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "message"),
    [
        ("core/feed.py", "import meshnode.links.tcp", "meshnode.core is not allowed to import"),
        ("codec/varint.py", "import meshnode.core.node", "meshnode.codec is not allowed to import"),
        ("daemon/jobs_probe.py", "import meshnode.cli", "meshnode.daemon is not allowed to import"),
        (
            "sim/mesh.py",
            "import meshnode.testing.emulator",
            "meshnode.sim is not allowed to import",
        ),
    ],
)
def test_a_wrong_arrow_breaks_the_contract(
    tmp_path: Path, module: str, wrong_import: str, message: str
) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / "meshnode" / module
    text = target.read_text() if target.exists() else '"""A throwaway module."""\n'
    target.write_text(text + f"\n{wrong_import}  # a throwaway violation\n")
    result = _lint_imports(tree)
    assert result.returncode == 1, result.stdout
    assert message in result.stdout
    assert "1 broken" in result.stdout or "2 broken" in result.stdout


def test_a_new_room_must_be_placed(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "meshnode" / "gadgets").mkdir()
    (tree / "meshnode" / "gadgets" / "__init__.py").write_text('"""Unplaced."""\n')
    result = _lint_imports(tree)
    assert result.returncode == 1, result.stdout
    assert "gadgets" in result.stdout

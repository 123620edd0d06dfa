"""The protocol core does no I/O: no sockets, threads, clocks or subprocesses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "meshnode"
CORE = [
    "errors.py",
    "types.py",
    "secure/identity.py",
    "core/feed.py",
    "core/policy.py",
    "core/node.py",
    "core/clocks.py",
    "core/replication.py",
    "sim/mesh.py",
    "sim/radio.py",
    "core/channel.py",
    "sim/scenario.py",
    "secure/keyquery.py",
    "secure/shs.py",
    "secure/boxstream.py",
    "radio/kiss.py",
    "radio/fragment.py",
    "radio/airtime.py",
    "radio/rnode.py",
    "radio/e22.py",
    "radio/rylr.py",
    "radio/drivers.py",
    "core/store.py",
    "core/memory_store.py",
    *[f"codec/{p.name}" for p in sorted((ROOT / "codec").glob("*.py"))],
]
FORBIDDEN = {"asyncio", "socket", "serial", "zeroconf", "threading", "time", "subprocess", "select"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    assert not _imports(ROOT / module) & FORBIDDEN


def test_only_compress_imports_lz4() -> None:
    users = {p.name for p in ROOT.rglob("*.py") if "lz4" in _imports(p)}
    assert users == {"compress.py"}

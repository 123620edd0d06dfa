"""The path says the role: pure rooms do no I/O, and each outside library has one room."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "meshnode"
PURE_ROOMS = ("core", "codec", "secure", "radio")
PURE_BASE = ("errors.py", "types.py")
# No I/O, clocks, hidden randomness, threads or logging in pure code: the core takes `now`
# and an injected RNG, and returns events that the shell logs.
FORBIDDEN = {
    "asyncio",
    "logging",
    "os",
    "random",
    "select",
    "selectors",
    "serial",
    "signal",
    "socket",
    "subprocess",
    "threading",
    "time",
    "zeroconf",
}
# Outside libraries with I/O of their own, each imported by one module only.
OWNERS = {
    "aiohttp": {"web/api.py", "web/inbox.py", "web/operator.py", "web/query.py", "web/server.py"},
    "lz4": {"codec/compress.py"},
    "segno": {"web/poster.py"},
    "serial": {"links/serialport.py"},
    "zeroconf": {"links/discovery.py"},
}


def imports_of(path: Path) -> set[str]:
    """Top-level names of every absolute import in a module (type-checking ones too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def pure_modules() -> list[str]:
    """Every module of the pure rooms, found by folder, and the pure base modules."""
    found = [str(p.relative_to(ROOT)) for room in PURE_ROOMS for p in (ROOT / room).rglob("*.py")]
    return sorted(found) + list(PURE_BASE)


def test_pure_rooms_hold_modules() -> None:
    counts = {room: len(list((ROOT / room).rglob("*.py"))) for room in PURE_ROOMS}
    assert all(n >= 2 for n in counts.values()), counts


@pytest.mark.parametrize("module", pure_modules())
def test_pure_module_imports_no_io(module: str) -> None:
    assert not imports_of(ROOT / module) & FORBIDDEN


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_one_room_imports_each_outside_library(library: str) -> None:
    users = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if library in imports_of(p)}
    assert users == OWNERS[library]


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "clock.py"
    module.write_text("from __future__ import annotations\nimport time\nfrom os import path\n")
    assert imports_of(module) & FORBIDDEN == {"time", "os"}

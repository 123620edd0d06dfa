"""Run one benchmark and print its figures, as JSON or as ``key: value`` lines."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import TYPE_CHECKING

from meshnode.bench import BENCHMARKS

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["main"]


def _load(name: str) -> Callable[[], dict[str, object]]:
    module, _, function = BENCHMARKS[name].partition(":")
    bench: Callable[[], dict[str, object]] = getattr(importlib.import_module(module), function)
    return bench


def main(argv: list[str] | None = None) -> int:
    """Parse ``NAME [--json]``, run the benchmark, print its figures."""
    parser = argparse.ArgumentParser(prog="python -m meshnode.bench")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    figures = _load(args.name)()
    if args.json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        sys.stdout.writelines(f"{key}: {value}\n" for key, value in figures.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())

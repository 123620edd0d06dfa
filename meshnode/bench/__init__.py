"""Benchmarks: ``python -m meshnode.bench NAME [--json]``.

Each benchmark is a function returning a flat dict of figures. Register one by adding a
line to BENCHMARKS ("module:function"); modules are imported only when their benchmark runs.
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

BENCHMARKS: dict[str, str] = {
    "hostile": "meshnode.bench.hostile:bench_hostile",
    "idle": "meshnode.bench.idle:bench_idle",
    "ingest": "meshnode.bench.ingest:bench_ingest",
    "lan": "meshnode.bench.lan:bench_lan",
    "private": "meshnode.bench.private:bench_private",
    "radio": "meshnode.bench.radio:bench_radio",
    "reopen": "meshnode.bench.reopen:bench_reopen",
    "replication": "meshnode.bench.replication:bench_replication",
    "serial": "meshnode.bench.serial:bench_serial",
    "usb": "meshnode.bench.usb:bench_usb",
    "web": "meshnode.bench.web:bench_web",
}

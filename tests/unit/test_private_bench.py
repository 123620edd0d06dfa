"""The private-message benchmark reports every figure the issue names, with sizes exact."""

from __future__ import annotations

import itertools

from meshnode.bench import BENCHMARKS
from meshnode.bench.private import LORA_ENTRY_BYTES, bench_private, private_entry_bytes

RATES = ("encrypt_per_s_1", "encrypt_per_s_7", "decrypt_per_s", "sign_per_s", "verify_per_s")


def test_the_benchmark_is_registered() -> None:
    assert BENCHMARKS["private"] == "meshnode.bench.private:bench_private"


def test_a_short_run_reports_every_figure() -> None:
    figures = bench_private(min_s=0.001, rounds=1)
    assert all(isinstance(figures[name], float) and figures[name] > 0 for name in RATES)
    # One sealing is cheaper than seven.
    assert figures["encrypt_per_s_7"] < figures["encrypt_per_s_1"]
    assert (figures["bytes_1"], figures["bytes_7"], figures["post_bytes"]) == (229, 571, 122)
    assert figures["fits_one_lora_frame"] == 1


def test_sizes_grow_by_one_slot_and_tag_per_recipient() -> None:
    sizes = [private_entry_bytes(n) for n in range(1, 8)]
    assert [b - a for a, b in itertools.pairwise(sizes)] == [49 + 8] * 6
    assert LORA_ENTRY_BYTES == 239
    assert sizes[0] <= LORA_ENTRY_BYTES < sizes[1]

"""Reconnect backoff: doubling from min to max, jittered to 50-100 % of the base."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.daemon.service import reconnect_delay_s

# base for failures 0, 1, 2, ... with min 1 s and max 300 s
BASES_1_300 = [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]


@pytest.mark.parametrize(("failures", "base"), list(enumerate(BASES_1_300)))
def test_delay_lies_in_half_to_whole_base(failures: int, base: float) -> None:
    rng = random.Random(7)
    delays = [reconnect_delay_s(failures, 1.0, 300.0, rng) for _ in range(200)]
    assert all(0.5 * base <= d <= base for d in delays)
    # The jitter spreads over the whole range, not one end of it.
    assert min(delays) < 0.6 * base
    assert max(delays) > 0.9 * base


def test_failures_0_and_1_give_the_min_base() -> None:
    for failures in (0, 1):
        delays = [reconnect_delay_s(failures, 2.5, 60.0, random.Random(s)) for s in range(50)]
        assert all(1.25 <= d <= 2.5 for d in delays)
    assert reconnect_delay_s(0, 2.5, 60.0, random.Random(3)) == reconnect_delay_s(
        1, 2.5, 60.0, random.Random(3)
    )


def test_seeded_rng_gives_the_same_delays() -> None:
    first = [reconnect_delay_s(f, 1.0, 300.0, random.Random(11)) for f in range(12)]
    second = [reconnect_delay_s(f, 1.0, 300.0, random.Random(11)) for f in range(12)]
    assert first == second


def test_delay_is_base_times_a_uniform_draw() -> None:
    rng, twin = random.Random(5), random.Random(5)
    for failures, base in enumerate(BASES_1_300):
        assert reconnect_delay_s(failures, 1.0, 300.0, rng) == base * twin.uniform(0.5, 1.0)


@pytest.mark.parametrize("failures", [31, 100, 10**6, 10**18])
def test_huge_failure_counts_stay_at_the_cap(failures: int) -> None:
    delay = reconnect_delay_s(failures, 1.0, 300.0, random.Random(1))
    assert isinstance(delay, float)
    assert 150.0 <= delay <= 300.0


def test_cap_applies_when_min_equals_max() -> None:
    assert all(5.0 <= reconnect_delay_s(f, 10.0, 10.0, random.Random(f)) <= 10.0 for f in range(40))


def test_different_seeds_give_different_jitter() -> None:
    first = reconnect_delay_s(4, 1.0, 300.0, random.Random(1))
    second = reconnect_delay_s(4, 1.0, 300.0, random.Random(2))
    assert first != second
    rng = random.Random(1)
    assert len({reconnect_delay_s(4, 1.0, 300.0, rng) for _ in range(20)}) == 20


@given(
    failures=st.integers(0, 10**9),
    min_s=st.floats(0.1, 3600),
    extra_s=st.floats(0, 86400),
    seed=st.integers(0, 2**32),
)
def test_delay_is_bounded(failures: int, min_s: float, extra_s: float, seed: int) -> None:
    max_s = min_s + extra_s
    base = min(max_s, min_s * 2 ** max(failures - 1, 0)) if failures < 64 else max_s
    delay = reconnect_delay_s(failures, min_s, max_s, random.Random(seed))
    assert 0.5 * base <= delay <= base

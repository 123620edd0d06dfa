"""LoRa time-on-air against published values, region limits, and the hard airtime gate."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import LocalProtocolError, MeshnodeError
from meshnode.radio.airtime import (
    CONTROL,
    DATA,
    REGIONS,
    AirtimeBudget,
    BudgetExceeded,
    LoRaParams,
    Region,
    check_params,
    duty_cycle_max,
    max_payload_within_s,
    time_on_air_s,
)

MS = 1e-3
TABLE_TOL_S = 0.05 * MS  # radio.md rounds to 0.1 ms

EU = REGIONS["EU868"]
EU_G3 = REGIONS["EU868_869_5"]
US = REGIONS["US915"]


def lora(**changes: Any) -> LoRaParams:
    """SF9/125 kHz/CR 4/5 on 868.1 MHz at 14 dBm, with ``changes``."""
    fields: dict[str, Any] = {
        "frequency_hz": 868.1e6,
        "spreading_factor": 9,
        "coding_rate": 5,
        "tx_power_dbm": 14,
    }
    return LoRaParams(**(fields | changes))


# -- time on air ----------------------------------------------------------------------------


def test_an1200_13_reference_value() -> None:
    assert time_on_air_s(lora(), 13) == pytest.approx(164.864 * MS, abs=1e-12)


# radio.md 2.3: 125 kHz, CR 4/5, preamble 8, explicit header, PHY CRC on (ms).
TABLE_MS = {
    1: (25.9, 51.7, 103.4, 206.8, 413.7, 827.4),
    16: (51.5, 92.7, 164.9, 329.7, 659.5, 1318.9),
    32: (71.9, 133.6, 246.8, 452.6, 987.1, 1810.4),
    64: (118.0, 215.6, 390.1, 698.4, 1560.6, 2793.5),
    100: (174.3, 307.7, 554.0, 1026.0, 2215.9, 3940.4),
    120: (199.9, 358.9, 635.9, 1189.9, 2543.6, 4595.7),
    124: (205.1, 369.2, 656.4, 1189.9, 2625.5, 4759.6),
    200: (317.7, 563.7, 1004.5, 1845.2, 4018.2, 7217.2),
    255: (399.6, 707.1, 1250.3, 2295.8, 5001.2, 9019.4),
}


@pytest.mark.parametrize(
    ("payload", "sf", "expected_ms"),
    [(payload, sf, row[sf - 7]) for payload, row in TABLE_MS.items() for sf in range(7, 13)],
)
def test_radio_md_table(payload: int, sf: int, expected_ms: float) -> None:
    params = lora(spreading_factor=sf)
    assert time_on_air_s(params, payload) == pytest.approx(expected_ms * MS, abs=TABLE_TOL_S)


@pytest.mark.parametrize(
    ("changes", "payload", "expected_ms", "tol_ms"),
    [
        ({"spreading_factor": 12}, 60, 2600.0, 50.0),  # iu3qez/lora_aprs_app #13: ~2.6 s
        ({"spreading_factor": 7, "bandwidth_hz": 250_000, "coding_rate": 7}, 124, 139.4, 0.05),
        ({"spreading_factor": 7, "bandwidth_hz": 250_000}, 124, 102.5, 0.05),
        ({"spreading_factor": 7, "bandwidth_hz": 500_000}, 124, 51.3, 0.05),
        ({"spreading_factor": 8, "bandwidth_hz": 500_000}, 124, 92.3, 0.05),
        # Meshtastic LongFast: SF11/250 kHz/CR 4/5, preamble 16 (radio.md gives whole ms).
        ({"spreading_factor": 11, "bandwidth_hz": 250_000, "preamble_symbols": 16}, 50, 641, 0.5),
        ({"spreading_factor": 11, "bandwidth_hz": 250_000, "preamble_symbols": 16}, 100, 1010, 0.5),
        ({"spreading_factor": 11, "bandwidth_hz": 250_000, "preamble_symbols": 16}, 255, 2157, 0.5),
    ],
)
def test_other_settings(
    changes: dict[str, Any], payload: int, expected_ms: float, tol_ms: float
) -> None:
    assert time_on_air_s(lora(**changes), payload) == pytest.approx(
        expected_ms * MS, abs=tol_ms * MS
    )


def test_preamble_term_is_counted() -> None:
    # The pitfall of radio.md 2.1: 4 more preamble symbols cost exactly 4 symbols.
    longer = lora(preamble_symbols=12)
    assert time_on_air_s(longer, 20) - time_on_air_s(lora(), 20) == pytest.approx(
        4 * lora().symbol_s
    )


def test_header_and_crc_terms() -> None:
    # SF7, 10 B: explicit header + CRC = 8 + ceil(96/28)*5 = 28 payload symbols;
    # implicit header, no CRC = 8 + ceil(60/28)*5 = 23.
    full = lora(spreading_factor=7)
    bare = lora(spreading_factor=7, explicit_header=False, crc_on=False)
    assert time_on_air_s(full, 10) == pytest.approx((12.25 + 28) * full.symbol_s)
    assert time_on_air_s(bare, 10) == pytest.approx((12.25 + 23) * full.symbol_s)


def test_negative_bit_count_gives_eight_payload_symbols() -> None:
    # SF12, implicit header, no CRC, 1 B: 8 - 48 + 28 - 20 < 0, so max(..., 0) applies.
    params = lora(spreading_factor=12, explicit_header=False, crc_on=False)
    assert time_on_air_s(params, 1) == pytest.approx((12.25 + 8) * params.symbol_s)


@pytest.mark.parametrize(
    ("sf", "payload", "expected_ms"),
    [
        # SX126x §6.1.4: preamble + 6.25 + 8 + ceil((8PL + 16 - 4SF + 20) / 4SF) * (CR + 4)
        (5, 10, (8 + 6.25 + 8 + 5 * 5) * 32 / 125),  # ceil(96/20) = 5
        (6, 10, (8 + 6.25 + 8 + 4 * 5) * 64 / 125),  # ceil(92/24) = 4
    ],
)
def test_sx126x_low_spreading_factors(sf: int, payload: int, expected_ms: float) -> None:
    params = lora(spreading_factor=sf)
    assert not params.low_data_rate_optimize
    assert time_on_air_s(params, payload) == pytest.approx(expected_ms * MS)


@pytest.mark.parametrize("payload", [0, 256, -1])
def test_payload_out_of_range(payload: int) -> None:
    with pytest.raises(ValueError, match="payload_bytes"):
        time_on_air_s(lora(), payload)


@given(sf=st.integers(5, 12), cr=st.integers(5, 8), bw=st.sampled_from([125e3, 250e3, 500e3]))
def test_airtime_grows_with_payload(sf: int, cr: int, bw: float) -> None:
    params = lora(spreading_factor=sf, coding_rate=cr, bandwidth_hz=bw)
    times = [time_on_air_s(params, n) for n in range(1, 256)]
    assert times == sorted(times)


# -- US dwell ceilings (radio.md 2.4) -------------------------------------------------------


@pytest.mark.parametrize(
    ("sf", "expected"), [(7, 255), (8, 138), (9, 66), (10, 24), (11, None), (12, None)]
)
def test_us_dwell_payload_ceilings(sf: int, expected: int | None) -> None:
    params = lora(frequency_hz=915e6, spreading_factor=sf)
    assert max_payload_within_s(params, 0.4) == expected
    if expected is not None and expected < 255:
        assert time_on_air_s(params, expected + 1) > 0.4


# -- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sf", "bw", "ldro"),
    [
        (10, 125_000, False),
        (11, 125_000, True),
        (12, 125_000, True),
        (11, 250_000, False),
        (12, 250_000, True),  # 16.384 ms
        (10, 62_500, True),  # 16.384 ms
        (7, 8_000, False),  # exactly 16 ms: mandatory only above
    ],
)
def test_ldro_is_derived(sf: int, bw: float, ldro: bool) -> None:
    assert lora(spreading_factor=sf, bandwidth_hz=bw).low_data_rate_optimize is ldro


def test_ldro_cannot_be_set_and_follows_replace() -> None:
    with pytest.raises(TypeError, match="low_data_rate_optimize"):
        lora(low_data_rate_optimize=False, spreading_factor=12)
    fast = dataclasses.replace(lora(spreading_factor=12), spreading_factor=7)
    assert not fast.low_data_rate_optimize


def test_params_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        lora().spreading_factor = 7  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frequency_hz", 100e6),
        ("frequency_hz", math.nan),
        ("bandwidth_hz", 7_000),
        ("bandwidth_hz", 600_000),
        ("spreading_factor", 4),
        ("spreading_factor", 13),
        ("coding_rate", 4),
        ("coding_rate", 9),
        ("coding_rate", 1),  # 1 means 4/5 elsewhere; here it is the denominator 5..8
        ("preamble_symbols", 5),
        ("tx_power_dbm", 40),
    ],
)
def test_params_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        lora(**{field: value})


# -- regions --------------------------------------------------------------------------------


def test_region_presets() -> None:
    assert (EU.low_hz, EU.high_hz, EU.duty_cycle, EU.max_dwell_s) == (868.0e6, 868.6e6, 0.01, None)
    assert (EU_G3.low_hz, EU_G3.high_hz, EU_G3.duty_cycle) == (869.4e6, 869.65e6, 0.10)
    assert EU_G3.max_tx_power_dbm == 27
    assert (US.low_hz, US.high_hz, US.duty_cycle, US.max_dwell_s) == (902e6, 928e6, None, 0.4)
    assert all(name == region.name for name, region in REGIONS.items())


@pytest.mark.parametrize(
    ("region", "changes"),
    [
        (EU, {"frequency_hz": 868.1e6}),
        (EU, {"frequency_hz": 868.5e6, "tx_power_dbm": 14}),
        # Meshtastic EU_868 LongFast fills the g3 band exactly.
        (EU_G3, {"frequency_hz": 869.525e6, "bandwidth_hz": 250_000, "tx_power_dbm": 27}),
        (US, {"frequency_hz": 904.6e6, "tx_power_dbm": 30}),
        (US, {"frequency_hz": 927.75e6, "bandwidth_hz": 500_000}),
    ],
)
def test_check_params_accepts(region: Region, changes: dict[str, Any]) -> None:
    check_params(region, lora(**changes))


@pytest.mark.parametrize(
    ("region", "changes", "field"),
    [
        (EU, {"frequency_hz": 869.525e6}, "frequency_hz"),
        (EU, {"frequency_hz": 433.175e6}, "frequency_hz"),
        (EU, {"frequency_hz": 868.0e6}, "frequency_hz"),  # half the channel below the band
        (EU, {"frequency_hz": 868.1e6, "tx_power_dbm": 20}, "tx_power_dbm"),
        (EU_G3, {"frequency_hz": 869.525e6, "bandwidth_hz": 500_000}, "frequency_hz"),
        (EU_G3, {"frequency_hz": 869.525e6, "tx_power_dbm": 28}, "tx_power_dbm"),
        (US, {"frequency_hz": 868.1e6}, "frequency_hz"),
        (US, {"frequency_hz": 915e6, "tx_power_dbm": 31}, "tx_power_dbm"),
    ],
)
def test_check_params_rejects(region: Region, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        check_params(region, lora(**changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"high_hz": 868.0e6}, "high_hz"),
        ({"duty_cycle": 0.0}, "duty_cycle"),
        ({"duty_cycle": 1.5}, "duty_cycle"),
        ({"max_dwell_s": 0.0}, "max_dwell_s"),
    ],
)
def test_region_validation(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(EU, **changes)


# -- the budget -----------------------------------------------------------------------------

SF9_FRAME_S = time_on_air_s(lora(), 124)  # 656.384 ms, radio.md 2.5


def test_one_percent_node_gets_54_frames_then_waits_exactly() -> None:
    budget = AirtimeBudget(EU)
    assert time_on_air_s(lora(), 124) == pytest.approx(0.656384, abs=1e-12)
    assert math.floor(36.0 / SF9_FRAME_S) == 54  # radio.md 2.7: 54 frames/h at SF9
    now = 0.0
    for _ in range(54):
        assert budget.wait_s(now, SF9_FRAME_S, DATA) == 0.0
        budget.record(now, SF9_FRAME_S, DATA)
        now += SF9_FRAME_S
    assert not budget.allowed(now, SF9_FRAME_S, DATA)
    # 0.101 s of the first frame must leave the window: the 55th starts 3564 s later
    # (window - budget), and its window then holds exactly 36 s.
    wait = budget.wait_s(now, SF9_FRAME_S, DATA)
    assert wait == pytest.approx(3600 - 36, abs=1e-6)
    assert not budget.allowed(now + wait - 1e-5, SF9_FRAME_S, DATA)
    assert budget.allowed(now + wait, SF9_FRAME_S, DATA)
    budget.record(now + wait, SF9_FRAME_S, DATA)
    starts = [t.start_s for t in budget.recent(now + wait)]
    assert duty_cycle_max([(s, SF9_FRAME_S) for s in starts], 3600) == pytest.approx(0.01)


def test_greedy_sender_over_a_day_uses_exactly_the_duty_cycle() -> None:
    budget = AirtimeBudget(EU)
    now = 0.0
    sent: list[tuple[float, float]] = []
    while now < 86_400:
        now += budget.wait_s(now, SF9_FRAME_S, DATA)
        budget.record(now, SF9_FRAME_S, DATA)
        sent.append((now, SF9_FRAME_S))
        now += SF9_FRAME_S
    assert duty_cycle_max(sent, 3600) == pytest.approx(0.01, abs=1e-9)
    assert duty_cycle_max(sent, 3600) <= 0.01 + 1e-9  # the gate's 1-us slack per window
    # 24 windows of 36 s each, plus the frame that starts just before the day ends.
    assert len(sent) == math.floor(36 * 24 / SF9_FRAME_S) + 1
    assert len(budget.recent(now)) <= 56  # memory stays bounded


def test_record_raises_when_over() -> None:
    budget = AirtimeBudget(EU)
    budget.record(0.0, 30.0, DATA)
    with pytest.raises(BudgetExceeded) as info:
        budget.record(30.0, 6.5, DATA)
    assert isinstance(info.value, MeshnodeError)
    assert (info.value.kind, info.value.duration_s) == (DATA, 6.5)
    # 0.5 s of the first frame must leave the window that ends with the new one.
    assert info.value.wait_s == pytest.approx(3600 - 36)
    assert budget.used_s(30.0) == pytest.approx(30.0)  # nothing was counted
    budget.record(30.0, 6.0, DATA)
    assert budget.used_share(36.0) == pytest.approx(0.01)


def test_control_share_is_enforced() -> None:
    budget = AirtimeBudget(EU)  # 36 s/h, of which 3.6 s control
    now = 0.0
    for _ in range(36):
        budget.record(now, 0.1, CONTROL)
        now += 0.1
    assert budget.control_used_s(now) == pytest.approx(3.6)
    assert not budget.allowed(now, 0.1, CONTROL)
    assert budget.allowed(now, 0.1, DATA)  # data still has 32.4 s
    with pytest.raises(BudgetExceeded):
        budget.record(now, 0.1, CONTROL)
    # The first beacon must leave the window entirely.
    assert budget.wait_s(now, 0.1, CONTROL) == pytest.approx(3600 - 3.6)
    assert budget.wait_s(now, 3.7, CONTROL) == math.inf
    assert budget.wait_s(now, 37.0, DATA) == math.inf


def test_control_also_counts_against_the_total() -> None:
    budget = AirtimeBudget(EU)
    budget.record(0.0, 35.0, DATA)
    assert not budget.allowed(35.0, 1.5, CONTROL)
    assert budget.allowed(35.0, 1.0, CONTROL)


def test_zero_control_share_blocks_control() -> None:
    budget = AirtimeBudget(EU, control_share=0.0)
    assert budget.wait_s(0.0, 0.05, CONTROL) == math.inf
    assert budget.allowed(0.0, 0.05, DATA)


def test_us915_dwell_is_the_only_rule() -> None:
    budget = AirtimeBudget(US)
    sf8 = lora(frequency_hz=915e6, spreading_factor=8)
    ok, too_long = time_on_air_s(sf8, 138), time_on_air_s(sf8, 139)
    now = 0.0
    for _ in range(20_000):  # far beyond any duty cycle: US915 has none
        budget.record(now, ok, CONTROL)
        now += ok
    assert budget.wait_s(now, ok, DATA) == 0.0
    assert not budget.allowed(now, too_long, DATA)
    assert budget.wait_s(now, too_long, DATA) == math.inf
    with pytest.raises(BudgetExceeded):
        budget.record(now, too_long, DATA)
    sf11 = lora(frequency_hz=915e6, spreading_factor=11)
    assert budget.wait_s(now, time_on_air_s(sf11, 1), DATA) == math.inf
    assert budget.used_share(now) == pytest.approx(1.0)
    assert budget.limit_s is None


@pytest.mark.parametrize("region", [EU, US])
def test_one_frame_at_a_time(region: Region) -> None:
    budget = AirtimeBudget(region)
    budget.record(0.0, 0.25, DATA)
    assert not budget.allowed(0.1, 0.1, CONTROL)
    assert budget.wait_s(0.1, 0.1, CONTROL) == pytest.approx(0.15)
    with pytest.raises(BudgetExceeded):
        budget.record(0.2, 0.1, DATA)
    budget.record(0.25, 0.1, DATA)  # back to back is fine


def test_longer_than_the_budget_never_fits() -> None:
    budget = AirtimeBudget(EU_G3, window_s=60.0)  # 6 s per minute
    assert budget.wait_s(0.0, 6.0, DATA) == 0.0
    assert budget.wait_s(0.0, 6.5, DATA) == math.inf


def test_partial_overlap_counts_partially() -> None:
    budget = AirtimeBudget(EU_G3, window_s=100.0)  # 10 s per 100 s
    budget.record(0.0, 10.0, DATA)
    # A 4-s frame fits once 4 s of the old one has left the window that ends with it:
    # start at 100, window [4, 104] holds 6 s old + 4 s new.
    assert budget.wait_s(10.0, 4.0, DATA) == pytest.approx(90.0)
    assert budget.used_s(105.0) == pytest.approx(5.0)
    assert budget.used_share(105.0) == pytest.approx(0.05)


def test_now_must_not_go_backwards() -> None:
    budget = AirtimeBudget(EU)
    budget.record(10.0, 0.1, DATA)
    with pytest.raises(LocalProtocolError):
        budget.allowed(9.0, 0.1, DATA)


@pytest.mark.parametrize(
    ("duration_s", "kind", "field"),
    [
        (0.0, DATA, "duration_s"),
        (-1.0, DATA, "duration_s"),
        (math.nan, DATA, "duration_s"),
        (0.1, "beacon", "kind"),
    ],
)
def test_budget_argument_validation(duration_s: float, kind: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AirtimeBudget(EU).allowed(0.0, duration_s, kind)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"control_share": 1.5}, "control_share"), ({"window_s": 0.0}, "window_s")],
)
def test_budget_construction_validation(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AirtimeBudget(EU, **kwargs)


# -- duty_cycle_max -------------------------------------------------------------------------


def test_duty_cycle_max_examples() -> None:
    assert duty_cycle_max([], 3600) == 0.0
    assert duty_cycle_max([(0.0, 36.0)], 3600) == pytest.approx(0.01)
    # Two 10-s frames 95 s apart: a 100-s window holds 5 s of one and all of the other.
    assert duty_cycle_max([(0.0, 10.0), (95.0, 10.0)], 100) == pytest.approx(0.15)
    # A frame longer than the window fills it.
    assert duty_cycle_max([(5.0, 250.0)], 100) == pytest.approx(1.0)
    # Overlapping transmissions (several senders) add up.
    assert duty_cycle_max([(0.0, 10.0), (5.0, 10.0)], 100) == pytest.approx(0.2)


def _brute_duty(pairs: list[tuple[float, float]], window_s: float) -> float:
    lows = [s for s, _ in pairs] + [s + d - window_s for s, d in pairs]
    return (
        max(
            sum(max(0.0, min(s + d, low + window_s) - max(s, low)) for s, d in pairs)
            for low in lows
        )
        / window_s
    )


@given(
    pairs=st.lists(
        st.tuples(st.floats(0, 1000, allow_nan=False), st.floats(0.01, 50, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    window_s=st.floats(1, 500),
    probe=st.floats(-600, 1100),
)
def test_duty_cycle_max_matches_brute_force(
    pairs: list[tuple[float, float]], window_s: float, probe: float
) -> None:
    best = duty_cycle_max(pairs, window_s)
    assert best == pytest.approx(_brute_duty(pairs, window_s), abs=1e-9)
    # No other window (here: one starting at ``probe``) holds more.
    at_probe = sum(max(0.0, min(s + d, probe + window_s) - max(s, probe)) for s, d in pairs)
    assert at_probe / window_s <= best + 1e-9


# -- the gate never lets the duty cycle through -----------------------------------------------

step = st.tuples(
    st.floats(0, 40),  # advance
    st.floats(0.02, 4.0),  # duration
    st.sampled_from([DATA, CONTROL]),
    st.booleans(),  # when refused: sleep exactly wait_s and send then
)


def _assert_would_overflow(
    sent: list[tuple[float, float, str]],
    new: tuple[float, float, str],
    window_s: float,
    control_share: float,
) -> None:
    """The gate is tight: a frame it refuses while the radio is idle really breaks a rule."""
    total = duty_cycle_max([(s, d) for s, d, _ in [*sent, new]], window_s)
    control = duty_cycle_max([(s, d) for s, d, k in [*sent, new] if k == CONTROL], window_s)
    assert total > 0.10 or (new[2] == CONTROL and control > 0.10 * control_share)


@given(steps=st.lists(step, max_size=150), control_share=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_gate_holds_in_every_sliding_window(
    steps: list[tuple[float, float, str, bool]], control_share: float
) -> None:
    window_s = 100.0  # 10 % of 100 s: short, so the sequences often hit the limit
    budget = AirtimeBudget(EU_G3, control_share=control_share, window_s=window_s)
    now = 0.0
    sent: list[tuple[float, float, str]] = []
    for advance, duration, kind, sleep in steps:
        now += advance
        allowed = budget.allowed(now, duration, kind)
        wait = budget.wait_s(now, duration, kind)
        assert (wait == 0.0) is allowed
        if not allowed and (not sent or now >= sent[-1][0] + sent[-1][1]):
            _assert_would_overflow(sent, (now, duration, kind), window_s, control_share)
        if not allowed and sleep and wait < math.inf:
            if wait > 1e-5:
                assert not budget.allowed(now + wait - 1e-5, duration, kind)
            now += wait
            assert budget.allowed(now, duration, kind)
            allowed = True
        if allowed:
            budget.record(now, duration, kind)
            sent.append((now, duration, kind))
        else:
            with pytest.raises(BudgetExceeded):
                budget.record(now, duration, kind)
    duty, slack = 0.10, 2e-6 / window_s  # the gate's 1-us slack, plus rounding
    assert duty_cycle_max([(s, d) for s, d, _ in sent], window_s) <= duty + slack
    control = [(s, d) for s, d, k in sent if k == CONTROL]
    assert duty_cycle_max(control, window_s) <= duty * control_share + slack


@given(steps=st.lists(st.tuples(st.floats(0, 900), st.floats(0.025, 9.0)), max_size=150))
def test_gate_holds_for_a_real_hour(steps: list[tuple[float, float]]) -> None:
    budget = AirtimeBudget(EU)
    now = 0.0
    sent: list[tuple[float, float]] = []
    for advance, duration in steps:
        now += advance
        wait = budget.wait_s(now, duration, DATA)
        if wait < math.inf:
            now += wait
            budget.record(now, duration, DATA)
            sent.append((now, duration))
    assert duty_cycle_max(sent, 3600.0) <= 0.01 + 1e-9

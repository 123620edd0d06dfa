"""LoRa time-on-air, regional limits, and the hard transmit gate (pure: `now` is passed in).

Time-on-air (Semtech SX1276 datasheet §4.1.1.7, the AN1200.13 calculator sheet; SX1261/2
datasheet §6.1.4 for SF5/SF6): a symbol lasts 2^SF / BW seconds. The preamble costs the
programmed preamble symbols plus 4.25 (the sync word and start-of-frame). The payload costs
8 symbols, plus (CR + 4) symbols for every started block of 4·(SF - 2·DE) bits. The bits
counted are 8·PL - 4·SF + 28, plus 16 with the PHY CRC, minus 20 without the explicit header.
A negative count is 0 blocks. PL is the PHY payload in bytes, CR is 1..4 for 4/5..4/8, and
DE (low-data-rate optimisation) is mandatory when a symbol lasts more than 16 ms (SF11 and
SF12 at 125 kHz), so it is derived, not chosen. SF5/SF6 exist only on SX126x, where the
preamble adds 6.25, the 28 becomes 20, and DE never applies. Pitfalls seen in the wild
(radio.md 2.1): dropping the constant preamble term, and libraries that disagree with the
sheet. The reference values in the tests are SF9/125 kHz/CR 4/5 with 13 B = 164.864 ms
(AN1200.13), the radio.md 2.3 table, and the US 400-ms payload ceilings (radio.md 2.4).

Regions (radio.md 2.5, 2.6): EU 868.0..868.6 MHz 1 % per hour at 14 dBm (25 mW ERP);
EU 869.4..869.65 MHz 10 % per hour at 27 dBm; US 902..928 MHz with no duty cycle, but each
transmission at most 0.4 s, at 30 dBm. The whole channel (centre ± BW/2) must fit the band.

Budget rules (`AirtimeBudget`): the airtime that falls inside any sliding window of
`window_s` must stay at or below duty_cycle · window_s. Control traffic (beacons, notes)
may use at most `control_share` of that. A transmission longer than the region's dwell
limit never fits. Without a duty cycle the dwell limit is the only rule. The gate counts
what overlaps a window, so a frame that is half out of the window counts half. One
transmitter sends one frame at a time: a frame does not fit before the last recorded one
has ended. Checks get 1 us of slack, so float rounding, or an event loop that wakes a hair
early after sleeping exactly `wait_s`, cannot make a fitting frame look over budget.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from meshnode.errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CONTROL",
    "DATA",
    "LDRO_SYMBOL_S",
    "MAX_PAYLOAD_BYTES",
    "REGIONS",
    "AirtimeBudget",
    "BudgetExceeded",
    "LoRaParams",
    "Region",
    "Transmission",
    "check_params",
    "duty_cycle_max",
    "max_payload_within_s",
    "time_on_air_s",
]

DATA = "data"
CONTROL = "control"
_KINDS = (DATA, CONTROL)

MAX_PAYLOAD_BYTES = 255  # the 8-bit length field and the 256-B FIFO (radio.md 2.4)
LDRO_SYMBOL_S = 0.016  # DE is mandatory for longer symbols
_EPS_S = 1e-6  # slack for float sums and early timer wake-ups; a symbol lasts >= 64 us


@dataclass(frozen=True, slots=True, kw_only=True)
class LoRaParams:
    """One LoRa PHY setting; low_data_rate_optimize follows from SF and BW."""

    frequency_hz: float
    bandwidth_hz: float = 125_000
    spreading_factor: int
    coding_rate: int  # 5..8 for 4/5..4/8
    preamble_symbols: int = 8
    explicit_header: bool = True
    crc_on: bool = True
    tx_power_dbm: float
    low_data_rate_optimize: bool = field(init=False)

    def __post_init__(self) -> None:
        _require(137e6 <= self.frequency_hz <= 1020e6, "frequency_hz", "137..1020 MHz")
        _require(7_800 <= self.bandwidth_hz <= 500_000, "bandwidth_hz", "7800..500000 Hz")
        _require(self.spreading_factor in range(5, 13), "spreading_factor", "5..12")
        _require(self.coding_rate in range(5, 9), "coding_rate", "5..8 (4/5..4/8)")
        _require(self.preamble_symbols in range(6, 65536), "preamble_symbols", "6..65535")
        _require(-20 <= self.tx_power_dbm <= 33, "tx_power_dbm", "-20..33 dBm")
        object.__setattr__(self, "low_data_rate_optimize", self.symbol_s > LDRO_SYMBOL_S)

    @property
    def symbol_s(self) -> float:
        """Duration of one chirp: 2^SF / BW."""
        return (1 << self.spreading_factor) / self.bandwidth_hz


def _require(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: must be {expected}")


def time_on_air_s(params: LoRaParams, payload_bytes: int) -> float:
    """Seconds on air for one frame of ``payload_bytes`` PHY payload (Semtech formula)."""
    if payload_bytes not in range(1, MAX_PAYLOAD_BYTES + 1):
        raise ValueError(f"payload_bytes: must be 1..{MAX_PAYLOAD_BYTES}, got {payload_bytes}")
    sf = params.spreading_factor
    crc_bits = 16 if params.crc_on else 0
    header_bits = 20 if params.explicit_header else 0
    if sf >= 7:
        bits = 8 * payload_bytes - 4 * sf + 8 + crc_bits + header_bits
        bits_per_block = 4 * (sf - 2 if params.low_data_rate_optimize else sf)
        quarter_overhead = 4 * params.preamble_symbols + 17  # preamble + 4.25
    else:  # SX126x only
        bits = 8 * payload_bytes - 4 * sf + crc_bits + header_bits
        bits_per_block = 4 * sf
        quarter_overhead = 4 * params.preamble_symbols + 25  # preamble + 6.25
    blocks = max(-(-bits // bits_per_block), 0)
    payload_symbols = 8 + blocks * params.coding_rate
    # Whole quarter symbols times 2^SF stay exact integers; one division rounds once.
    return (quarter_overhead + 4 * payload_symbols) * (1 << sf) / (4 * params.bandwidth_hz)


def max_payload_within_s(params: LoRaParams, limit_s: float) -> int | None:
    """Largest PHY payload whose airtime is at most ``limit_s``; None if not even 1 B fits."""
    best = None
    for size in range(1, MAX_PAYLOAD_BYTES + 1):
        if time_on_air_s(params, size) > limit_s:
            break
        best = size
    return best


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """A band with its legal limits: duty cycle per window (None: none) and dwell per frame."""

    name: str
    low_hz: float
    high_hz: float
    duty_cycle: float | None
    max_dwell_s: float | None
    max_tx_power_dbm: float

    def __post_init__(self) -> None:
        _require(0 < self.low_hz < self.high_hz, "high_hz", "above low_hz > 0")
        if self.duty_cycle is not None:
            _require(0 < self.duty_cycle <= 1, "duty_cycle", "in (0, 1]")
        if self.max_dwell_s is not None:
            _require(self.max_dwell_s > 0, "max_dwell_s", "> 0")


REGIONS: Mapping[str, Region] = MappingProxyType(
    {
        r.name: r
        for r in (
            Region(
                name="EU868",
                low_hz=868.0e6,
                high_hz=868.6e6,
                duty_cycle=0.01,
                max_dwell_s=None,
                max_tx_power_dbm=14,
            ),
            Region(
                name="EU868_869_5",
                low_hz=869.4e6,
                high_hz=869.65e6,
                duty_cycle=0.10,
                max_dwell_s=None,
                max_tx_power_dbm=27,
            ),
            Region(
                name="US915",
                low_hz=902e6,
                high_hz=928e6,
                duty_cycle=None,
                max_dwell_s=0.4,
                max_tx_power_dbm=30,
            ),
        )
    }
)


def check_params(region: Region, params: LoRaParams) -> None:
    """Raise ValueError unless the whole channel sits in the band at a legal power."""
    half = params.bandwidth_hz / 2
    if params.frequency_hz - half < region.low_hz or params.frequency_hz + half > region.high_hz:
        raise ValueError(
            f"frequency_hz: {params.frequency_hz:.0f} ± {half:.0f} Hz is outside {region.name} "
            f"({region.low_hz:.0f}..{region.high_hz:.0f} Hz)"
        )
    if params.tx_power_dbm > region.max_tx_power_dbm:
        raise ValueError(
            f"tx_power_dbm: {params.tx_power_dbm} dBm is above the {region.name} limit "
            f"of {region.max_tx_power_dbm} dBm"
        )


class BudgetExceeded(LocalProtocolError):
    """record() was called for a transmission the budget does not allow now."""

    def __init__(self, *, kind: str, duration_s: float, wait_s: float) -> None:
        super().__init__(
            f"{kind} transmission of {duration_s:.6f} s is over the airtime budget "
            f"(fits in {wait_s:.6f} s)"
        )
        self.kind = kind
        self.duration_s = duration_s
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmission:
    """One recorded transmission."""

    start_s: float
    duration_s: float
    kind: str

    @property
    def end_s(self) -> float:
        """When the transmission left the air."""
        return self.start_s + self.duration_s


class AirtimeBudget:
    """The hard transmit gate: a sliding-window duty cycle, a control share, a dwell limit."""

    def __init__(
        self, region: Region, *, control_share: float = 0.10, window_s: float = 3600.0
    ) -> None:
        _require(0 <= control_share <= 1, "control_share", "in [0, 1]")
        _require(0 < window_s < math.inf, "window_s", "> 0 and finite")
        self.region = region
        self.control_share = control_share
        self.window_s = window_s
        self._log: deque[Transmission] = deque()
        self._now_s = -math.inf
        self._busy_until_s = -math.inf

    @property
    def limit_s(self) -> float | None:
        """Airtime allowed in any window (None: no duty cycle)."""
        duty = self.region.duty_cycle
        return None if duty is None else duty * self.window_s

    @property
    def control_limit_s(self) -> float | None:
        """Control airtime allowed in any window (None: no duty cycle)."""
        limit = self.limit_s
        return None if limit is None else limit * self.control_share

    def allowed(self, now: float, duration_s: float, kind: str) -> bool:
        """True if this transmission may start at ``now``."""
        self._enter(now, duration_s, kind)
        return self._fits(now, duration_s, kind)

    def wait_s(self, now: float, duration_s: float, kind: str) -> float:
        """Seconds until this transmission fits: 0 if now, inf if never."""
        self._enter(now, duration_s, kind)
        return self._wait_s(now, duration_s, kind)

    def record(self, now: float, duration_s: float, kind: str) -> None:
        """Count a transmission starting at ``now``; raise BudgetExceeded if it does not fit."""
        self._enter(now, duration_s, kind)
        if not self._fits(now, duration_s, kind):
            wait = self._wait_s(now, duration_s, kind)
            raise BudgetExceeded(kind=kind, duration_s=duration_s, wait_s=wait)
        self._log.append(Transmission(start_s=now, duration_s=duration_s, kind=kind))
        self._busy_until_s = now + duration_s

    def used_s(self, now: float) -> float:
        """Airtime inside the window that ends at ``now``."""
        self._advance(now)
        return _overlap_s(self._log, now - self.window_s, now)

    def control_used_s(self, now: float) -> float:
        """Control airtime inside the window that ends at ``now``."""
        self._advance(now)
        return _overlap_s(self._control(), now - self.window_s, now)

    def used_share(self, now: float) -> float:
        """Duty cycle of the window that ends at ``now`` (compare with region.duty_cycle)."""
        return self.used_s(now) / self.window_s

    def recent(self, now: float) -> tuple[Transmission, ...]:
        """The transmissions still kept (those that reach into the window ending at now)."""
        self._advance(now)
        return tuple(self._log)

    def _advance(self, now: float) -> None:
        if not now >= self._now_s:
            raise LocalProtocolError(f"now went backwards: {now} < {self._now_s}")
        self._now_s = now
        # Older entries can no longer overlap any window the gate looks at.
        cutoff = now - self.window_s
        while self._log and self._log[0].end_s <= cutoff:
            self._log.popleft()

    def _enter(self, now: float, duration_s: float, kind: str) -> None:
        _require(kind in _KINDS, "kind", f"one of {_KINDS}")
        _require(0 < duration_s < math.inf, "duration_s", "> 0 and finite")
        self._advance(now)

    def _control(self) -> list[Transmission]:
        return [t for t in self._log if t.kind == CONTROL]

    def _rules(self, kind: str) -> list[tuple[float, list[Transmission]]]:
        """(limit_s, transmissions it counts) for every duty-cycle rule this kind obeys."""
        limit, control_limit = self.limit_s, self.control_limit_s
        if limit is None or control_limit is None:
            return []
        rules = [(limit, list(self._log))]
        if kind == CONTROL:
            rules.append((control_limit, self._control()))
        return rules

    def _fits(self, now: float, duration_s: float, kind: str) -> bool:
        dwell = self.region.max_dwell_s
        if dwell is not None and duration_s > dwell:
            return False
        if now < self._busy_until_s - _EPS_S:
            return False  # one transmitter: the last frame is still on the air
        # Frames never overlap, so the window ending with this frame holds the most airtime.
        start = now + duration_s - self.window_s
        return all(
            duration_s + _overlap_s(log, start, math.inf) <= limit + _EPS_S
            for limit, log in self._rules(kind)
        )

    def _wait_s(self, now: float, duration_s: float, kind: str) -> float:
        dwell = self.region.max_dwell_s
        if dwell is not None and duration_s > dwell:
            return math.inf
        rules = self._rules(kind)
        if any(duration_s > limit + _EPS_S for limit, _ in rules):
            return math.inf
        if self._fits(now, duration_s, kind):
            return 0.0
        starts = (_earliest_s(log, now, duration_s, limit, self.window_s) for limit, log in rules)
        start = max([self._busy_until_s, *starts])
        # Never 0 when it does not fit now, whatever the rounding.
        return max(start - now, _EPS_S)


def _overlap_s(log: Iterable[Transmission], low_s: float, high_s: float) -> float:
    """Airtime of ``log`` inside [low_s, high_s]."""
    total = 0.0
    for t in log:
        total += max(0.0, min(t.end_s, high_s) - max(t.start_s, low_s))
    return total


def _earliest_s(
    log: list[Transmission], now: float, duration_s: float, limit_s: float, window_s: float
) -> float:
    """Earliest start >= now at which ``duration_s`` more fits under ``limit_s``.

    A frame starting at t, after the logged frames ended, fits when duration_s plus A(x) is
    at most limit_s, where x = t + duration_s - window_s and A(x) is the logged airtime after
    x: that window holds the most, since the new frame enters it no slower than old airtime
    (one frame at a time) leaves. A falls piecewise linearly as x passes the logged frames,
    so sweep x over their starts and ends and solve inside the segment that reaches the target.
    """
    target = max(limit_s - duration_s, 0.0)
    x = now + duration_s - window_s
    left = _overlap_s(log, x, math.inf)
    if left <= target:
        return now
    slope = -sum(1 for t in log if t.start_s <= x < t.end_s)
    events = sorted(
        [(t.start_s, -1) for t in log if t.start_s > x] + [(t.end_s, 1) for t in log if t.end_s > x]
    )
    for at, delta in events:
        if slope < 0 and left + slope * (at - x) <= target:
            return x + (left - target) / -slope + window_s - duration_s
        left += slope * (at - x)
        x = at
        slope += delta
    return x + window_s - duration_s


def duty_cycle_max(transmissions: Iterable[tuple[float, float]], window_s: float) -> float:
    """Highest share of airtime in any window of ``window_s`` over (start_s, duration_s) pairs."""
    _require(0 < window_s < math.inf, "window_s", "> 0 and finite")
    pairs = sorted(transmissions)
    if not pairs:
        return 0.0
    starts = [start for start, _ in pairs]
    ends_by_start = [start + duration for start, duration in pairs]
    longest_s = max(duration for _, duration in pairs)
    by_end = sorted(zip(ends_by_start, (duration for _, duration in pairs), strict=True))
    ends = [end for end, _ in by_end]
    # Prefix sums of durations, not of times, so differences of them stay precise.
    ended_s = [0.0, *itertools.accumulate(duration for _, duration in by_end)]

    def before(x: float) -> float:
        """Airtime before x: the frames that ended, plus the part of those still on air."""
        total = ended_s[bisect.bisect_right(ends, x)]
        for k in range(bisect.bisect_left(starts, x - longest_s), bisect.bisect_right(starts, x)):
            if ends_by_start[k] > x:
                total += x - starts[k]
        return total

    # The busiest window starts at a frame start or ends at a frame end.
    lows = itertools.chain(starts, (end - window_s for end in ends))
    best = max(before(low + window_s) - before(low) for low in lows)
    return best / window_s

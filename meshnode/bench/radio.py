"""Radio benchmark: three nodes on one LoRa channel, SF9, 125 kHz, CR 4/5, EU868 at 1%.

Runs in the deterministic radio simulator (meshnode/sim_radio.py) with the real Channel
core and the real airtime budget. A posts 50 entries of 50-byte text at t = 0; B and C
follow A. Airtime comes from the Semtech formula for the PHY payload each transmission
takes: the channel message, 3 bytes of link packet (fragment header and CRC-16) and the
1-byte RNode header.

* ``air_bytes_per_entry``: all PHY payload bytes on the air, beacons and control
  included, divided by the entries delivered (50 entries x 2 receivers; goal <= 128).
* ``control_share``: control airtime over all airtime (goal <= 0.10).
* ``duty_cycle_max``: the highest airtime share of any node in any one-hour window
  (must be <= 0.01).
* ``delivered``: fraction of the 100 deliveries made (goal 1.0); ``time_to_deliver_s``.

Five seeds (the random backoffs differ); medians, with the worst delivery and duty cycle.
"""

from __future__ import annotations

import statistics

from meshnode.channel import ChannelConfig
from meshnode.radio.airtime import REGIONS, AirtimeBudget, LoRaParams, duty_cycle_max, time_on_air_s
from meshnode.sim_radio import Air

__all__ = ["bench_radio", "run_radio"]

_LINK_BYTES = 3 + 1  # fragment header + CRC-16, RNode header
_PARAMS = LoRaParams(
    frequency_hz=868_300_000,
    bandwidth_hz=125_000,
    spreading_factor=9,
    coding_rate=5,
    tx_power_dbm=14,
)


def _airtime_s(message_bytes: int) -> float:
    return time_on_air_s(_PARAMS, min(255, message_bytes + _LINK_BYTES))


def bench_radio(entries: int = 50, seeds: int = 5) -> dict[str, object]:
    """The scenario under ``seeds`` seeds (deterministic each); medians, worst duty cycle."""
    runs = [run_radio(entries, seed) for seed in range(1, seeds + 1)]
    out: dict[str, object] = {"entries": entries, "receivers": 2, "seeds": seeds}
    for key in ("air_bytes_per_entry", "control_share", "time_to_deliver_s", "transmissions"):
        out[key] = statistics.median(float(str(r[key])) for r in runs)
    out["delivered"] = min(float(str(r["delivered"])) for r in runs)
    out["duty_cycle_max"] = max(float(str(r["duty_cycle_max"])) for r in runs)
    out["control_share_max"] = max(float(str(r["control_share"])) for r in runs)
    return out


def run_radio(entries: int = 50, seed: int = 1) -> dict[str, object]:
    """A posts ``entries`` 50-byte texts; B and C follow A; measure the air."""
    region = REGIONS["EU868"]
    # The timers the daemon's radio interface would use for this link (RNode, MTU 254).
    config = ChannelConfig.for_link(frame_s=_airtime_s(251), mtu_bytes=251)
    air = Air(
        3,
        airtime_s=_airtime_s,
        seed=seed,
        config=config,
        budget=lambda: AirtimeBudget(region, control_share=0.10),
    )
    air.follow(1, 0)
    air.follow(2, 0)
    for k in range(entries):
        air.publish(0, f"entry {k} ".ljust(50, "."))
    feed = air.node(0).feed_id
    total = entries  # A's feed holds its posts only

    def held() -> int:
        return sum(air.node(i).store.latest_seq(feed) for i in (1, 2))

    air.run_until(lambda: held() == 2 * total, limit_s=6 * 3600)
    done_at = air.now
    air_bytes = sum(log.size + _LINK_BYTES for log in air.log)
    airtime = sum(log.duration_s for log in air.log)
    control = sum(log.duration_s for log in air.log if log.control)
    per_node = [
        duty_cycle_max([(log.start, log.duration_s) for log in air.log if log.sender == i], 3600)
        for i in range(3)
    ]
    return {
        "entries": entries,
        "receivers": 2,
        "delivered": round(held() / (2 * total), 4),
        "time_to_deliver_s": round(done_at, 1),
        "air_bytes_per_entry": round(air_bytes / max(held(), 1), 1),
        "control_share": round(control / airtime, 4) if airtime else 0.0,
        "duty_cycle_max": round(max(per_node), 5),
        "transmissions": len(air.log),
        "entry_transmissions": sum(1 for log in air.log if not log.control),
        "airtime_s": round(airtime, 2),
    }

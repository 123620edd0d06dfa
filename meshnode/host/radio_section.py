"""One [[radio]] table of the config: its type, each region's channel, and each device's checks.

The generic checks (types, ranges, unknown keys) are the config parser's; these are the
ones that need to know the radio: a LoRa channel inside the region's band and power limit,
an E22's whole-MHz channels, the settings a REYAX model accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from meshnode.errors import ConfigError

if TYPE_CHECKING:
    from meshnode.radio.airtime import LoRaParams

__all__ = [
    "RADIO_DRIVERS",
    "REGION_FREQUENCY_HZ",
    "RadioDriver",
    "RadioSection",
    "check_radio",
    "default_frequency_hz",
    "lora_params",
]

RadioDriver = Literal["serial", "kiss", "e22", "rylr"]
RADIO_DRIVERS: tuple[str, ...] = ("serial", "kiss", "e22", "rylr")
# A sensible channel per region when the config names none (radio.md 5: 869.525 MHz in EU).
REGION_FREQUENCY_HZ = {"EU868": 868_300_000, "EU868_869_5": 869_525_000, "US915": 904_600_000}


@dataclass(frozen=True, slots=True, kw_only=True)
class RadioSection:
    """One [[radio]] table: a serial cable or a LoRa radio, and its channel settings."""

    name: str
    driver: RadioDriver
    port: str
    baud: int = 115200
    region: str = ""
    frequency_hz: int = 0
    bandwidth_hz: int = 125_000
    spreading_factor: int = 9
    coding_rate: int = 5
    tx_power_dbm: int = 14
    control_share: float = 0.10
    model: str = ""


def check_radio(key: str, radio: RadioSection) -> None:
    """What ``radio``'s device and region demand of its settings; ConfigError under ``key``."""
    if radio.driver == "e22":
        _check_e22(key, radio)
    if radio.driver != "serial":
        _check_lora(key, radio)
    if radio.driver == "rylr":
        _check_rylr(key, radio)


def default_frequency_hz(driver: str, region: str) -> int:
    """The region's usual frequency; for an E22, the first whole channel inside the band."""
    if driver != "e22" or region not in REGION_FREQUENCY_HZ:
        return REGION_FREQUENCY_HZ.get(region, 0)
    from meshnode.radio.airtime import REGIONS
    from meshnode.radio.e22 import E22Band

    band = REGIONS[region]
    base, step = E22Band.MHZ_900.base_hz, 1_000_000
    first = base + max(0, -(-(int(band.low_hz) - base) // step)) * step
    return first if first <= band.high_hz else 0  # 0: none; _check_e22 says so


def _check_e22(key: str, radio: RadioSection) -> None:
    """An E22 tunes whole channels only (1-MHz steps from 850.125 or 410.125 MHz)."""
    from meshnode.radio.e22 import E22Band, channel_for_frequency

    if not radio.frequency_hz:
        raise ConfigError(
            f"{key}.region",
            f"an E22 has no channel inside {radio.region} (1-MHz steps from 850.125 MHz); "
            'use region "EU868" (868.125 MHz) or "US915"',
        )
    band = E22Band.MHZ_900 if radio.frequency_hz > 600_000_000 else E22Band.MHZ_400
    try:
        channel_for_frequency(radio.frequency_hz, band)
    except ValueError as exc:
        raise ConfigError(f"{key}.frequency_hz", str(exc)) from None


def _check_rylr(key: str, radio: RadioSection) -> None:
    """The REYAX model accepts these LoRa settings."""
    from meshnode.radio.rylr import RylrModel, meshnode_params

    try:
        meshnode_params(
            RylrModel(radio.model),
            frequency_hz=radio.frequency_hz,
            bandwidth_hz=radio.bandwidth_hz,
            spreading_factor=radio.spreading_factor,
            coding_rate=radio.coding_rate,
            tx_power_dbm=radio.tx_power_dbm,
        )
    except ValueError as exc:
        raise ConfigError(key, f"{radio.model}: {exc}") from None


def _check_lora(key: str, radio: RadioSection) -> None:
    """The LoRa settings make a valid channel inside the region's band and power limit."""
    from meshnode.radio.airtime import REGIONS, check_params

    try:
        check_params(REGIONS[radio.region], lora_params(radio))
    except ValueError as exc:
        field_name, _, reason = str(exc).partition(": ")
        raise ConfigError(f"{key}.{field_name}", reason or str(exc)) from None


def lora_params(radio: RadioSection) -> LoRaParams:
    """The LoRa PHY settings of a [[radio]] table."""
    from meshnode.radio.airtime import LoRaParams

    return LoRaParams(
        frequency_hz=radio.frequency_hz,
        bandwidth_hz=radio.bandwidth_hz,
        spreading_factor=radio.spreading_factor,
        coding_rate=radio.coding_rate,
        tx_power_dbm=radio.tx_power_dbm,
    )

"""Timers and limits of one shared channel (core/channel.py), scaled to the link's speed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChannelConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """Timers and limits of one shared channel; times scale with the channel's speed."""

    mtu_bytes: int = 200
    beacon_min_s: float = 10.0
    beacon_max_s: float = 1800.0
    want_min_s: float = 5.0
    want_max_s: float = 600.0
    backoff_s: float = 2.0
    entries_per_want: int = 32
    waiting_s: float = 3600.0

    frame_s: float = 0.0  # a full frame's time on the wire or air (0: unknown)

    @classmethod
    def for_link(cls, *, frame_s: float, mtu_bytes: int, cable: bool = False) -> ChannelConfig:
        """Timers scaled to a link whose full frame takes ``frame_s`` on the air or wire.

        A cable (``cable``, or a radio of unknown airtime: ``frame_s`` 0) has no duty cycle:
        its timers are short, but never shorter than a few frames of its wire time.
        """
        if cable or frame_s <= 0:
            return cls(
                mtu_bytes=mtu_bytes,
                frame_s=frame_s,
                backoff_s=max(0.05, frame_s / 2),
                beacon_min_s=max(2.0, 10 * frame_s),
                beacon_max_s=600.0,
                want_min_s=max(0.5, 1.5 * frame_s),
                want_max_s=max(30.0, 60 * frame_s),
                entries_per_want=256,
            )
        return cls(
            mtu_bytes=mtu_bytes,
            frame_s=frame_s,
            backoff_s=3 * frame_s,
            beacon_min_s=120 * frame_s,
            beacon_max_s=3600.0,
            want_min_s=16 * frame_s,
            want_max_s=1200.0,
        )

    @property
    def in_flight_s(self) -> float:
        """How long an entry sent may still be on its way (sent, heard, its WANT not yet)."""
        return 2 * self.frame_s + 0.05

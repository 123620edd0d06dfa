"""Identifier types shared by every layer."""

from __future__ import annotations

from typing import NewType, Protocol

__all__ = ["FeedId", "MsgId", "PeerId", "Rng", "Seq"]

FeedId = NewType("FeedId", bytes)
"""32-byte ed25519 public key of a feed's author."""

MsgId = NewType("MsgId", bytes)
"""32-byte sha256 of an entry's full signed encoding."""

PeerId = NewType("PeerId", bytes)
"""32-byte public key of a node we talk to."""

Seq = NewType("Seq", int)
"""Position of an entry in its feed: 1, 2, ...; 0 means none."""


class Rng(Protocol):
    """The randomness the core is given (``random.Random`` fits); the core never seeds it."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...

    def uniform(self, a: float, b: float) -> float:
        """A float between ``a`` and ``b``."""
        ...

"""Identifier types shared by every layer."""

from __future__ import annotations

from typing import NewType

__all__ = ["FeedId", "MsgId", "PeerId", "Seq"]

FeedId = NewType("FeedId", bytes)
"""32-byte ed25519 public key of a feed's author."""

MsgId = NewType("MsgId", bytes)
"""32-byte sha256 of an entry's full signed encoding."""

PeerId = NewType("PeerId", bytes)
"""32-byte public key of a node we talk to."""

Seq = NewType("Seq", int)
"""Position of an entry in its feed: 1, 2, ...; 0 means none."""

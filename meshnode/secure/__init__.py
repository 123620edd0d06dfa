"""Secure channels: the shs1 secret handshake and box-stream, both sans-IO."""

from __future__ import annotations

from meshnode.secure.boxstream import BoxStreamDecoder, BoxStreamEncoder
from meshnode.secure.shs import (
    ClientHandshake,
    HandshakeError,
    HandshakeResult,
    HandshakeStep,
    ServerHandshake,
    generate_ephemeral_secret,
)

__all__ = [
    "BoxStreamDecoder",
    "BoxStreamEncoder",
    "ClientHandshake",
    "HandshakeError",
    "HandshakeResult",
    "HandshakeStep",
    "ServerHandshake",
    "generate_ephemeral_secret",
]

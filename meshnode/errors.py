"""Every exception meshnode raises; each says whose fault it is."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "ForkError",
    "LinkClosed",
    "LinkError",
    "LinkTimeout",
    "LocalProtocolError",
    "MeshnodeError",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "VerifyError",
]


class MeshnodeError(Exception):
    """Root of every meshnode error."""


class DecodeError(MeshnodeError, ValueError):
    """Bytes from outside are malformed."""


class VerifyError(DecodeError):
    """Signature or hash-chain check failed."""


class ForkError(VerifyError):
    """Two different entries claim the same (feed, seq)."""


class LocalProtocolError(MeshnodeError):
    """We called the core wrongly: a bug."""


class LinkError(MeshnodeError):
    """Transport failure."""


class LinkClosed(LinkError):
    """The link was closed."""


class LinkTimeout(LinkError):
    """The link timed out."""


class StoreError(MeshnodeError):
    """Disk problem."""


class StoreCorrupt(StoreError):
    """Stored bytes fail their checksum or do not decode."""


class StoreFull(StoreError):
    """The disk (or a configured cap) has no room; nothing stored was lost."""


class StoreLocked(StoreError):
    """Another process holds the store's writer lock."""


class ConfigError(MeshnodeError, ValueError):
    """Bad config; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key

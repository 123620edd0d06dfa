"""Contacts' encryption keys pinned on first use: ``contacts-keys.json`` in the data dir.

The first time a private message is sent to a person, their published key (ENCKEY) is
pinned. When the key they publish later differs, sending to them is refused until the
user accepts the new key (``meshnode keys accept``): a reset phone, or someone who has
the person's signing key, must not silently receive the conversation. File (mode 0600,
replaced atomically)::

    {"version": 1, "keys": {"@<feed>.ed25519": {"key": "<64 hex>", "generation": 0,
                                                "first_seen_ms": 1700000000000}}}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError, MeshnodeError
from meshnode.secure.identity import format_feed_id, parse_feed_id
from meshnode.store.files import write_atomically

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.codec.content import EncKey
    from meshnode.types import FeedId

__all__ = ["KEYPINS_NAME", "MAX_PINS", "KeyPins", "Pin", "PinError", "keypins_path"]

log = logging.getLogger(__name__)

KEYPINS_NAME = "contacts-keys.json"
# Contacts pinned at most: one per person written to; a file of this many is ~2 MiB.
MAX_PINS = 10_000
_MAX_FILE_BYTES = 4 << 20
_VERSION = 1


class PinError(MeshnodeError):
    """The pinned keys file cannot be read or written, or is full."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    """The key we pinned for one contact."""

    key: bytes
    generation: int
    first_seen_ms: int


def keypins_path(data_dir: Path) -> Path:
    """Where the data dir keeps pinned keys."""
    return data_dir / KEYPINS_NAME


class KeyPins:
    """Pinned keys, read from the file on each use (another process may have changed it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[FeedId, Pin]:
        """Every pin; PinError when the file is damaged (it is never silently reset)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PinError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if len(data) > _MAX_FILE_BYTES:
            raise PinError(f"{self.path} is over {_MAX_FILE_BYTES >> 20} MiB")
        try:
            doc = json.loads(data)
            if doc["version"] != _VERSION:
                raise DecodeError(f"version {doc['version']!r} unknown")
            return {
                parse_feed_id(feed): Pin(
                    key=bytes.fromhex(v["key"]),
                    generation=int(v["generation"]),
                    first_seen_ms=int(v["first_seen_ms"]),
                )
                for feed, v in doc["keys"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PinError(f"{self.path} is damaged ({exc}): fix or remove it") from exc

    def save(self, pins: dict[FeedId, Pin]) -> None:
        """Replace the file with ``pins``."""
        if len(pins) > MAX_PINS:
            raise PinError(f"more than {MAX_PINS} pinned keys")
        keys = {
            format_feed_id(feed): {
                "key": pin.key.hex(),
                "generation": pin.generation,
                "first_seen_ms": pin.first_seen_ms,
            }
            for feed, pin in sorted(pins.items())
        }
        data = json.dumps({"version": _VERSION, "keys": keys}, indent=1).encode() + b"\n"
        try:
            write_atomically(self.path, data, mode=0o600)
        except OSError as exc:
            raise PinError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def pin(self, feed: FeedId, enckey: EncKey, now_ms: int) -> Pin:
        """Pin ``enckey`` for ``feed`` (replacing any pin); returns the new pin."""
        pins = self.load()
        pin = Pin(key=enckey.key, generation=enckey.generation, first_seen_ms=now_ms)
        pins[feed] = pin
        self.save(pins)
        log.info("pinned the encryption key of %s", format_feed_id(feed))
        return pin

"""Text forms of TCP addresses: where we listen and which peers we dial.

A listen address is ``HOST:PORT`` (``0.0.0.0:7420``; ``[::]:7420`` for IPv6; port 0 picks
a free port, which the daemon logs). A peer is
``HOST:PORT`` or ``HOST:PORT@ID``, where ID is the peer's feed id (``@<base64>.ed25519``)
and pins its key; without it the key is asked for with a key query (secure/keyquery.py)
and trusted on first use. IPv6 hosts go in brackets: ``[fe80::1%eth0]:7420``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.secure.identity import format_feed_id, parse_feed_id

if TYPE_CHECKING:
    from meshnode.types import FeedId

__all__ = ["DEFAULT_PORT", "PeerAddress", "format_host_port", "parse_host_port", "parse_peer"]

DEFAULT_PORT = 7420


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    """A peer to dial, with its key when it is pinned or already known."""

    host: str
    port: int
    feed_id: FeedId | None = None

    def __str__(self) -> str:
        text = format_host_port(self.host, self.port)
        return text if self.feed_id is None else f"{text}{format_feed_id(self.feed_id)}"


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 in brackets); DecodeError with the reason otherwise.

    ``any_port`` accepts port 0, "any free port", which only makes sense for listening.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or ":" not in host:
            raise DecodeError(f"{text!r}: an IPv6 address goes as [ADDRESS]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise DecodeError(f"{text!r}: expected HOST:PORT")
        if ":" in host:
            raise DecodeError(f"{text!r}: put an IPv6 address in brackets: [ADDRESS]:PORT")
    if not host or any(c.isspace() for c in host):
        raise DecodeError(f"{text!r}: missing or malformed host")
    lowest = 0 if any_port else 1
    if not (port_text.isascii() and port_text.isdigit()) or not lowest <= int(port_text) < 65536:
        raise DecodeError(f"{text!r}: port must be {lowest}..65535")
    return host, int(port_text)


def parse_peer(text: str) -> PeerAddress:
    """``HOST:PORT`` or ``HOST:PORT@ID``; DecodeError with the reason otherwise."""
    address, at, key_text = text.partition("@")
    host, port = parse_host_port(address.strip())
    feed_id = parse_feed_id(key_text.lstrip("@")) if at else None
    return PeerAddress(host=host, port=port, feed_id=feed_id)

"""Adapters for the language-independent shs1 test suite (npm package ``shs1-test``).

``python -m meshnode.testing.shs1test server NETWORK_KEY SERVER_SK SERVER_PK`` and
``python -m meshnode.testing.shs1test client NETWORK_KEY SERVER_PK`` (all hex) run one
handshake over stdin/stdout, as ``shs1testserver`` / ``shs1testclient`` expect:

    server: read 64, write 64, read 112, write 80 + 112-byte outcome, exit 0
    client: write 64, read 64, write 112, read 80, write 112-byte outcome, exit 0

On a bad peer message the adapter writes nothing more to stdout and exits 1; bad
arguments exit 2. Ephemeral keys (and the client's long-term key) are fresh and random.
The suite executes a file, so callers wrap this module in a two-line shell script.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

from meshnode.errors import DecodeError
from meshnode.secure.identity import Identity
from meshnode.secure.shs import (
    ClientHandshake,
    ServerHandshake,
    generate_ephemeral_secret,
)
from meshnode.types import PeerId

__all__ = ["main"]

log = logging.getLogger(__name__)

_USAGE = "usage: shs1test server NET_KEY_HEX SK_HEX PK_HEX | client NET_KEY_HEX SERVER_PK_HEX"


def _hex_arg(text: str, size: int, name: str) -> bytes:
    """Decode one hex argument of an exact size; ValueError names the argument."""
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not hex") from exc
    if len(raw) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(raw)}")
    return raw


def _send(out: BinaryIO, data: bytes) -> None:
    """Write and flush, so each message reaches the suite as one pipe write."""
    if data:
        out.write(data)
        out.flush()


def _drive(machine: ClientHandshake | ServerHandshake, rx: BinaryIO, tx: BinaryIO) -> int:
    """Pump stdin into the machine until it completes; return the exit status."""
    while True:
        # Read exactly one message: bytes past it would be box-stream data, not ours.
        chunk = rx.read(machine.bytes_needed)
        if not chunk:
            log.error("peer closed the stream mid-handshake")
            return 1
        try:
            reply = machine.receive(chunk)
        except DecodeError as exc:
            log.error("%s", exc)
            return 1
        if machine.result is not None:
            # The server's last message and its outcome go out in one write.
            _send(tx, reply + machine.result.outcome())
            return 0
        _send(tx, reply)


def _server(args: list[str], rx: BinaryIO, tx: BinaryIO) -> int:
    """Server role: NET_KEY SK (64 bytes, seed || pk) PK."""
    network_key = _hex_arg(args[0], 32, "network key")
    secret = _hex_arg(args[1], 64, "server secret key")
    public = _hex_arg(args[2], 32, "server public key")
    identity = Identity(secret[:32])
    if identity.feed_id != public:
        raise ValueError("server public key does not match the secret key")
    machine = ServerHandshake(
        identity=identity,
        network_key=network_key,
        ephemeral_secret=generate_ephemeral_secret(),
    )
    return _drive(machine, rx, tx)


def _client(args: list[str], rx: BinaryIO, tx: BinaryIO) -> int:
    """Client role: NET_KEY SERVER_PK."""
    machine = ClientHandshake(
        identity=Identity.generate(),
        server=PeerId(_hex_arg(args[1], 32, "server public key")),
        network_key=_hex_arg(args[0], 32, "network key"),
        ephemeral_secret=generate_ephemeral_secret(),
    )
    _send(tx, machine.start())
    return _drive(machine, rx, tx)


def main(argv: list[str], rx: BinaryIO | None = None, tx: BinaryIO | None = None) -> int:
    """Run one role; 0 on a completed handshake, 1 on a bad peer, 2 on bad arguments."""
    rx = rx if rx is not None else sys.stdin.buffer
    tx = tx if tx is not None else sys.stdout.buffer
    roles = {"server": (_server, 3), "client": (_client, 2)}
    if not argv or argv[0] not in roles or len(argv) != roles[argv[0]][1] + 1:
        log.error("%s", _USAGE)
        return 2
    role, _ = roles[argv[0]]
    try:
        return role(argv[1:], rx, tx)
    except ValueError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="shs1test: %(message)s", stream=sys.stderr)
    sys.exit(main(sys.argv[1:]))

"""Box-stream: the encrypted, authenticated byte stream that follows the secret handshake.

Each direction has its own 32-byte key and 24-byte starting nonce N, both taken from the
handshake outcome (shs.py). A stream is a sequence of packets, then a goodbye::

    header      34 bytes   secretbox(key, nonce N+2P) of the 18-byte plaintext
                           body_length (2 bytes, big-endian, 1..4096) || body_mac (16 bytes)
                           laid out as header_mac (16) || encrypted plaintext (18)
    body        1..4096    secretbox(key, nonce N+2P+1) of the body, its 16-byte MAC
                           detached into the header (so the body costs no extra bytes)
    goodbye     34 bytes   a header whose plaintext is 18 zero bytes, at the next nonce

P counts packets from 0; nonces are 24-byte big-endian integers that wrap at 2**192.
The receiver opens every header before reading its body, so it never waits for a length
an attacker chose; any flipped byte, reordered or truncated packet fails a MAC.

Budget: 34 bytes per packet of up to 4096 body bytes (0.8 % at full size, 34 % for a
100-byte frame); a 10,000-byte message is three packets (4096 + 4096 + 1808), 10,102
bytes on the wire. Any layout change bumps the vectors in tests/vectors/boxstream.json.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions

from meshnode.errors import DecodeError, LocalProtocolError

__all__ = [
    "HEADER_BYTES",
    "KEY_BYTES",
    "MAC_BYTES",
    "MAX_BODY_BYTES",
    "NONCE_BYTES",
    "BoxStreamDecoder",
    "BoxStreamEncoder",
]

KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
HEADER_PLAIN_BYTES = 2 + MAC_BYTES
HEADER_BYTES = MAC_BYTES + HEADER_PLAIN_BYTES
MAX_BODY_BYTES = 4096

_NONCE_MODULUS = 1 << (8 * NONCE_BYTES)
_GOODBYE_PLAIN = bytes(HEADER_PLAIN_BYTES)


def _check_key_and_nonce(key: bytes, nonce: bytes) -> int:
    """Validate sizes and return the nonce as an integer."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"box-stream key must be {KEY_BYTES} bytes, got {len(key)}")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"box-stream nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    return int.from_bytes(nonce, "big")


class _NonceCounter:
    """A 24-byte big-endian counter: each call returns the current nonce and advances."""

    __slots__ = ("_value",)

    def __init__(self, value: int) -> None:
        self._value = value

    def take(self) -> bytes:
        """The current nonce; the next call returns this plus one."""
        nonce = self._value.to_bytes(NONCE_BYTES, "big")
        self._value = (self._value + 1) % _NONCE_MODULUS
        return nonce


class BoxStreamEncoder:
    """One direction of a box-stream, sending side."""

    __slots__ = ("_closed", "_key", "_nonces")

    def __init__(self, *, key: bytes, nonce: bytes) -> None:
        self._key = key
        self._nonces = _NonceCounter(_check_key_and_nonce(key, nonce))
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once goodbye() was called."""
        return self._closed

    def encode(self, body: bytes) -> bytes:
        """Packets carrying ``body``, split into pieces of at most MAX_BODY_BYTES."""
        if self._closed:
            raise LocalProtocolError("box-stream: encode() after goodbye()")
        parts = [
            self._packet(body[start : start + MAX_BODY_BYTES])
            for start in range(0, len(body), MAX_BODY_BYTES)
        ]
        return b"".join(parts)

    def goodbye(self) -> bytes:
        """The final header that tells the peer the stream ended on purpose."""
        if self._closed:
            raise LocalProtocolError("box-stream: goodbye() twice")
        self._closed = True
        return nacl.bindings.crypto_secretbox(_GOODBYE_PLAIN, self._nonces.take(), self._key)

    def _packet(self, piece: bytes) -> bytes:
        """Header and body for one piece of 1..MAX_BODY_BYTES bytes."""
        header_nonce = self._nonces.take()
        boxed = nacl.bindings.crypto_secretbox(piece, self._nonces.take(), self._key)
        body_mac, ciphertext = boxed[:MAC_BYTES], boxed[MAC_BYTES:]
        plain = len(piece).to_bytes(2, "big") + body_mac
        return nacl.bindings.crypto_secretbox(plain, header_nonce, self._key) + ciphertext


class BoxStreamDecoder:
    """One direction of a box-stream, receiving side: bytes in any chunks, bodies out."""

    __slots__ = ("_buffer", "_closed", "_failed", "_key", "_nonces", "_pending", "_pos")

    def __init__(self, *, key: bytes, nonce: bytes) -> None:
        self._key = key
        self._nonces = _NonceCounter(_check_key_and_nonce(key, nonce))
        self._buffer = bytearray()
        self._pos = 0
        # (body length, body MAC, body nonce) of a header whose body has not fully arrived.
        self._pending: tuple[int, bytes, bytes] | None = None
        self._closed = False
        self._failed = False

    @property
    def closed(self) -> bool:
        """True once the peer's goodbye arrived."""
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet part of a complete body."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every body they complete, in order."""
        if self._failed:
            raise LocalProtocolError("box-stream: feed() after a DecodeError")
        try:
            return self._feed(data)
        except DecodeError:
            self._failed = True
            raise

    def _feed(self, data: bytes) -> list[bytes]:
        """feed() without the poisoning."""
        if self._closed:
            if data:
                raise DecodeError("box-stream: data after goodbye")
            return []
        self._buffer += data
        bodies: list[bytes] = []
        try:
            while not self._closed:
                if self._pending is None and not self._open_header():
                    break
                body = self._open_body()
                if body is None:
                    break
                bodies.append(body)
        finally:
            # Drop consumed bytes once per call, not once per packet.
            del self._buffer[: self._pos]
            self._pos = 0
        return bodies

    def _take(self, count: int) -> bytes | None:
        """The next ``count`` unread bytes, or None if they have not all arrived."""
        end = self._pos + count
        if len(self._buffer) < end:
            return None
        chunk = bytes(self._buffer[self._pos : end])
        self._pos = end
        return chunk

    def _open_header(self) -> bool:
        """Open the next header if it has arrived; False when more bytes are needed."""
        boxed = self._take(HEADER_BYTES)
        if boxed is None:
            return False
        try:
            plain = nacl.bindings.crypto_secretbox_open(boxed, self._nonces.take(), self._key)
        except nacl.exceptions.CryptoError as exc:
            raise DecodeError("box-stream: header fails authentication") from exc
        if plain == _GOODBYE_PLAIN:
            self._closed = True
            if len(self._buffer) > self._pos:
                raise DecodeError("box-stream: data after goodbye")
            return False
        length = int.from_bytes(plain[:2], "big")
        if not 1 <= length <= MAX_BODY_BYTES:
            raise DecodeError(f"box-stream: body length {length} outside 1..{MAX_BODY_BYTES}")
        self._pending = (length, plain[2:], self._nonces.take())
        return True

    def _open_body(self) -> bytes | None:
        """Open the pending body if it has fully arrived."""
        assert self._pending is not None
        length, mac, nonce = self._pending
        ciphertext = self._take(length)
        if ciphertext is None:
            return None
        self._pending = None
        try:
            return nacl.bindings.crypto_secretbox_open(mac + ciphertext, nonce, self._key)
        except nacl.exceptions.CryptoError as exc:
            raise DecodeError("box-stream: body fails authentication") from exc

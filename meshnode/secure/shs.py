"""Secret handshake (shs1, as in Secure Scuttlebutt), as two sans-IO state machines.

Notation: K the 32-byte network key; A/B the client's/server's long-term ed25519 keys
(converted to curve25519 for Diffie-Hellman); a/b their fresh curve25519 ephemeral keys;
xy the scalar multiplication of x's secret with y's public key; hmac = HMAC-SHA-512-256
(libsodium crypto_auth); box = secretbox with a zero nonce; sig_X an ed25519 signature::

    1 client hello   C->S  64 bytes  hmac_K(a_pub) (32) || a_pub (32)
    2 server hello   S->C  64 bytes  hmac_K(b_pub) (32) || b_pub (32)
    3 client auth    C->S 112 bytes  box_k3(sig_A(K || B_pub || sha256(ab)) (64) || A_pub (32))
                                     with k3 = sha256(K || ab || aB); 16 bytes of MAC
    4 server accept  S->C  80 bytes  box_k4(sig_B(K || sig_A || A_pub || sha256(ab)) (64))
                                     with k4 = sha256(K || ab || aB || Ab); 16 bytes of MAC

The client must know B_pub beforehand; the server learns A_pub from message 3. A peer on
another network key fails at message 1 or 2 (the hmac), before anything is revealed.

Outcome, per side, with shared = sha256(k4)::

    encrypt_key   = sha256(shared || peer's long-term key)   32 bytes
    encrypt_nonce = peer's hello hmac[:24]                   24 bytes
    decrypt_key   = sha256(shared || own long-term key)      32 bytes
    decrypt_nonce = own hello hmac[:24]                      24 bytes

Budget: 320 bytes in 4 messages, 2 round trips; then box-stream (boxstream.py). Every
failure caused by the peer's bytes raises HandshakeError, a DecodeError subclass, so the
shell drops a bad peer like any other malformed input; misuse raises LocalProtocolError.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import nacl.bindings
import nacl.exceptions
import nacl.utils

from meshnode.errors import DecodeError, LocalProtocolError
from meshnode.secure.boxstream import BoxStreamDecoder, BoxStreamEncoder
from meshnode.types import PeerId

if TYPE_CHECKING:
    from meshnode.secure.identity import Identity

__all__ = [
    "ACCEPT_BYTES",
    "AUTH_BYTES",
    "HELLO_BYTES",
    "OUTCOME_BYTES",
    "ClientHandshake",
    "HandshakeError",
    "HandshakeResult",
    "HandshakeStep",
    "ServerHandshake",
    "crypto_auth",
    "generate_ephemeral_secret",
]

HELLO_BYTES = 64
AUTH_BYTES = 112
ACCEPT_BYTES = 80
OUTCOME_BYTES = 112

_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_NONCE_BYTES = 24
_ZERO_NONCE = bytes(_NONCE_BYTES)


class HandshakeStep(IntEnum):
    """The four shs1 messages, numbered as on the wire."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CLIENT_AUTH = 3
    SERVER_ACCEPT = 4


class HandshakeError(DecodeError):
    """The peer's handshake message failed a check; ``step`` names the message."""

    def __init__(self, step: HandshakeStep, message: str) -> None:
        super().__init__(f"shs {step.name.lower().replace('_', ' ')}: {message}")
        self.step = step


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeResult:
    """What a completed handshake yields: who the peer is, and the box-stream keys."""

    peer: PeerId
    encrypt_key: bytes
    encrypt_nonce: bytes
    decrypt_key: bytes
    decrypt_nonce: bytes

    def outcome(self) -> bytes:
        """The 112-byte outcome as the shs1 test suite expects it."""
        return self.encrypt_key + self.encrypt_nonce + self.decrypt_key + self.decrypt_nonce

    def encoder(self) -> BoxStreamEncoder:
        """Box-stream for bytes we send."""
        return BoxStreamEncoder(key=self.encrypt_key, nonce=self.encrypt_nonce)

    def decoder(self) -> BoxStreamDecoder:
        """Box-stream for bytes the peer sends."""
        return BoxStreamDecoder(key=self.decrypt_key, nonce=self.decrypt_nonce)


def generate_ephemeral_secret() -> bytes:
    """32 fresh random bytes for one handshake (the shell calls this, not the machines)."""
    return nacl.utils.random(_KEY_BYTES)


# -- primitives -------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def crypto_auth(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-512-256, which is libsodium's crypto_auth."""
    return hmac.digest(key, message, hashlib.sha512)[:32]


def _hello(network_key: bytes, ephemeral_public: bytes) -> bytes:
    """Message 1 or 2."""
    return crypto_auth(network_key, ephemeral_public) + ephemeral_public


def _check_hello(network_key: bytes, message: bytes, step: HandshakeStep) -> bytes:
    """The peer's ephemeral public key from its hello, if the hmac matches our network."""
    mac, ephemeral_public = message[:32], message[32:]
    if not hmac.compare_digest(mac, crypto_auth(network_key, ephemeral_public)):
        raise HandshakeError(step, "hmac mismatch (another network key, or not shs1)")
    return ephemeral_public


def _dh(secret: bytes, public: bytes, step: HandshakeStep) -> bytes:
    """Curve25519 scalar multiplication; a low-order peer point is the peer's fault."""
    try:
        return nacl.bindings.crypto_scalarmult(secret, public)
    except nacl.exceptions.CryptoError as exc:
        raise HandshakeError(step, "peer key is a low-order point") from exc


def _to_curve(ed_public: bytes, step: HandshakeStep) -> bytes:
    """Long-term ed25519 public key as a curve25519 public key."""
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed_public)
    except nacl.exceptions.CryptoError as exc:
        raise HandshakeError(step, "long-term key is not a usable ed25519 point") from exc


def _sign(secret_key: bytes, message: bytes) -> bytes:
    """Detached ed25519 signature."""
    return nacl.bindings.crypto_sign(message, secret_key)[:_SIGNATURE_BYTES]


def _verify(public: bytes, message: bytes, signature: bytes, step: HandshakeStep) -> None:
    """Raise HandshakeError unless ``signature`` is ``public``'s over ``message``."""
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except nacl.exceptions.CryptoError as exc:
        raise HandshakeError(step, "bad signature") from exc


def _box(key: bytes, plain: bytes) -> bytes:
    return nacl.bindings.crypto_secretbox(plain, _ZERO_NONCE, key)


def _unbox(key: bytes, boxed: bytes, step: HandshakeStep) -> bytes:
    try:
        return nacl.bindings.crypto_secretbox_open(boxed, _ZERO_NONCE, key)
    except nacl.exceptions.CryptoError as exc:
        raise HandshakeError(step, "secretbox fails (wrong keys or tampered)") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class _Secrets:
    """Everything both sides know once message 3 has been built or opened."""

    network_key: bytes
    ab: bytes
    a_big_b: bytes
    big_a_b: bytes

    def accept_key(self) -> bytes:
        """Secretbox key of message 4; hashed again, the root of the box-stream keys."""
        return _sha256(self.network_key + self.ab + self.a_big_b + self.big_a_b)


def _result(
    secrets: _Secrets, *, own: bytes, peer: bytes, own_hello: bytes, peer_hello: bytes
) -> HandshakeResult:
    """Box-stream keys and nonces for one side."""
    shared = _sha256(secrets.accept_key())
    return HandshakeResult(
        peer=PeerId(peer),
        encrypt_key=_sha256(shared + peer),
        encrypt_nonce=peer_hello[:_NONCE_BYTES],
        decrypt_key=_sha256(shared + own),
        decrypt_nonce=own_hello[:_NONCE_BYTES],
    )


# -- state machines ---------------------------------------------------------------------


class _Handshake:
    """Shared plumbing: buffer chunks, hand each complete message to ``_handle``."""

    def __init__(self, identity: Identity, network_key: bytes, ephemeral_secret: bytes) -> None:
        if len(network_key) != _KEY_BYTES:
            raise ValueError(f"network key must be {_KEY_BYTES} bytes")
        if len(ephemeral_secret) != _KEY_BYTES:
            raise ValueError(f"ephemeral secret must be {_KEY_BYTES} bytes")
        self._network_key = network_key
        self._public, self._secret = nacl.bindings.crypto_sign_seed_keypair(identity.seed)
        self._curve_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(self._secret)
        self._eph_secret = ephemeral_secret
        self._eph_public = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
        self._own_hello = _hello(network_key, self._eph_public)
        self._buffer = bytearray()
        self._expect = 0  # bytes of the next peer message; 0 while not waiting for one
        self._failed = False
        self._result: HandshakeResult | None = None

    @property
    def result(self) -> HandshakeResult | None:
        """The outcome once the handshake has completed, else None."""
        return self._result

    @property
    def bytes_needed(self) -> int:
        """Bytes still missing from the peer message we wait for (0: none expected)."""
        return max(self._expect - len(self._buffer), 0) if self._expect else 0

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the last handshake message (box-stream data)."""
        return bytes(self._buffer) if self._result is not None else b""

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the peer; return the bytes to send back (maybe empty)."""
        if self._failed or self._result is not None or self._expect == 0:
            raise LocalProtocolError("shs: receive() when no peer message is expected")
        self._buffer += data
        out = b""
        while self._expect and len(self._buffer) >= self._expect:
            message = bytes(self._buffer[: self._expect])
            del self._buffer[: self._expect]
            try:
                out += self._handle(message)
            except HandshakeError:
                self._failed = True
                raise
        return out

    def _handle(self, message: bytes) -> bytes:
        """Process one complete peer message; set ``_expect`` for the next one."""
        raise NotImplementedError


class ClientHandshake(_Handshake):
    """The dialing side: knows the server's long-term key, sends messages 1 and 3."""

    def __init__(
        self,
        *,
        identity: Identity,
        server: PeerId,
        network_key: bytes,
        ephemeral_secret: bytes,
    ) -> None:
        super().__init__(identity, network_key, ephemeral_secret)
        if len(server) != _KEY_BYTES:
            raise ValueError(f"server key must be {_KEY_BYTES} bytes")
        self._server = bytes(server)
        self._started = False
        self._server_hello = b""
        self._auth_plain = b""
        self._secrets: _Secrets | None = None

    def start(self) -> bytes:
        """Message 1, the client hello; call once, first."""
        if self._started:
            raise LocalProtocolError("shs: start() twice")
        self._started = True
        self._expect = HELLO_BYTES
        return self._own_hello

    def _handle(self, message: bytes) -> bytes:
        if self._secrets is None:
            return self._on_server_hello(message)
        self._on_server_accept(message, self._secrets)
        return b""

    def _on_server_hello(self, message: bytes) -> bytes:
        """Check message 2 and build message 3."""
        step = HandshakeStep.SERVER_HELLO
        server_eph = _check_hello(self._network_key, message, step)
        ab = _dh(self._eph_secret, server_eph, step)
        a_big_b = _dh(self._eph_secret, _to_curve(self._server, step), step)
        self._secrets = _Secrets(
            network_key=self._network_key,
            ab=ab,
            a_big_b=a_big_b,
            big_a_b=_dh(self._curve_secret, server_eph, step),
        )
        self._server_hello = message
        signed = self._network_key + self._server + _sha256(ab)
        self._auth_plain = _sign(self._secret, signed) + self._public
        self._expect = ACCEPT_BYTES
        return _box(_sha256(self._network_key + ab + a_big_b), self._auth_plain)

    def _on_server_accept(self, message: bytes, secrets: _Secrets) -> None:
        """Check message 4 and finish."""
        step = HandshakeStep.SERVER_ACCEPT
        signature = _unbox(secrets.accept_key(), message, step)
        signed = self._network_key + self._auth_plain + _sha256(secrets.ab)
        _verify(self._server, signed, signature, step)
        self._expect = 0
        self._result = _result(
            secrets,
            own=self._public,
            peer=self._server,
            own_hello=self._own_hello,
            peer_hello=self._server_hello,
        )


class ServerHandshake(_Handshake):
    """The listening side: learns the client's long-term key from message 3."""

    def __init__(self, *, identity: Identity, network_key: bytes, ephemeral_secret: bytes) -> None:
        super().__init__(identity, network_key, ephemeral_secret)
        self._client_hello = b""
        self._expect = HELLO_BYTES

    def _handle(self, message: bytes) -> bytes:
        if not self._client_hello:
            return self._on_client_hello(message)
        return self._on_client_auth(message)

    def _on_client_hello(self, message: bytes) -> bytes:
        """Check message 1 and answer with message 2."""
        _check_hello(self._network_key, message, HandshakeStep.CLIENT_HELLO)
        self._client_hello = message
        self._expect = AUTH_BYTES
        return self._own_hello

    def _on_client_auth(self, message: bytes) -> bytes:
        """Check message 3 and answer with message 4."""
        step = HandshakeStep.CLIENT_AUTH
        client_eph = self._client_hello[32:]
        ab = _dh(self._eph_secret, client_eph, step)
        a_big_b = _dh(self._curve_secret, client_eph, step)
        plain = _unbox(_sha256(self._network_key + ab + a_big_b), message, step)
        signature, client = plain[:_SIGNATURE_BYTES], plain[_SIGNATURE_BYTES:]
        _verify(client, self._network_key + self._public + _sha256(ab), signature, step)
        secrets = _Secrets(
            network_key=self._network_key,
            ab=ab,
            a_big_b=a_big_b,
            big_a_b=_dh(self._eph_secret, _to_curve(client, step), step),
        )
        self._expect = 0
        self._result = _result(
            secrets,
            own=self._public,
            peer=client,
            own_hello=self._own_hello,
            peer_hello=self._client_hello,
        )
        signed = self._network_key + plain + _sha256(ab)
        return _box(secrets.accept_key(), _sign(self._secret, signed))

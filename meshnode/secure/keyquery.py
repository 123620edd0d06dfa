"""Key query: learn a server's long-term key from its address, for members of the network only.

The secret handshake needs the server's key before the first byte, but a static peer in
the config may be given as ``host:port`` alone. The dialer then opens a connection, asks,
closes, and dials again with the key (trusted on first use). Both messages are keyed by
the network key K, so a node of another network learns nothing and gets no answer::

    query   C->S  64 bytes  hmac_Q(nonce) (32) || nonce (32)     Q = sha256(LABEL || K)
    answer  S->C  48 bytes  secretbox(sha256(Q || nonce), zero nonce, server key (32))

hmac is HMAC-SHA-512-256 (libsodium crypto_auth), as in shs1. The query has the size of
an shs1 client hello (hmac_K(a_pub) || a_pub) and the same layout with another key, so
the listener reads 64 bytes and tells the two apart by which hmac verifies
(``classify_opening``); shs itself is untouched. The server closes after the answer.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

import nacl.bindings
import nacl.exceptions
import nacl.utils

from meshnode.errors import DecodeError
from meshnode.secure.shs import crypto_auth
from meshnode.types import PeerId

__all__ = [
    "ANSWER_BYTES",
    "QUERY_BYTES",
    "Opening",
    "answer_key_query",
    "classify_opening",
    "decode_key_answer",
    "encode_key_query",
]

QUERY_BYTES = 64
ANSWER_BYTES = 48
_LABEL = b"meshnode key query v1"
_ZERO_NONCE = bytes(24)


class Opening(Enum):
    """What the first 64 bytes of an inbound connection are."""

    HANDSHAKE = "shs1 client hello"
    KEY_QUERY = "key query"
    UNKNOWN = "unknown (another network key, or not a meshnode)"


def _query_key(network_key: bytes) -> bytes:
    return hashlib.sha256(_LABEL + network_key).digest()


def encode_key_query(network_key: bytes, nonce: bytes | None = None) -> bytes:
    """The 64-byte query; ``nonce`` (32 bytes) is random unless given (vectors)."""
    nonce = nacl.utils.random(32) if nonce is None else nonce
    if len(nonce) != 32:
        raise ValueError("key query nonce must be 32 bytes")
    return crypto_auth(_query_key(network_key), nonce) + nonce


def classify_opening(message: bytes, network_key: bytes) -> Opening:
    """Tell an shs1 client hello from a key query; anything else is UNKNOWN."""
    if len(message) != QUERY_BYTES:
        return Opening.UNKNOWN
    mac, body = message[:32], message[32:]
    if hmac.compare_digest(mac, crypto_auth(network_key, body)):
        return Opening.HANDSHAKE
    if hmac.compare_digest(mac, crypto_auth(_query_key(network_key), body)):
        return Opening.KEY_QUERY
    return Opening.UNKNOWN


def answer_key_query(query: bytes, network_key: bytes, server: PeerId) -> bytes:
    """The 48-byte answer to a query that ``classify_opening`` called KEY_QUERY."""
    box_key = hashlib.sha256(_query_key(network_key) + query[32:]).digest()
    return nacl.bindings.crypto_secretbox(bytes(server), _ZERO_NONCE, box_key)


def decode_key_answer(answer: bytes, query: bytes, network_key: bytes) -> PeerId:
    """The server's key from its answer to our ``query``; DecodeError if it does not open."""
    if len(answer) != ANSWER_BYTES:
        raise DecodeError(f"key answer must be {ANSWER_BYTES} bytes, got {len(answer)}")
    box_key = hashlib.sha256(_query_key(network_key) + query[32:]).digest()
    try:
        key = nacl.bindings.crypto_secretbox_open(answer, _ZERO_NONCE, box_key)
    except nacl.exceptions.CryptoError as exc:
        raise DecodeError("key answer does not open: another network key?") from exc
    return PeerId(key)

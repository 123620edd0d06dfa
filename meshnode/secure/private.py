"""Private messages: encryption keys from the identity seed, and a multi-recipient sealed box.

The construction is SSB's private-box (a fresh ephemeral X25519 key; a body key sealed to
each recipient with crypto_box; the body under that key with crypto_secretbox), with two
changes that make a one-recipient message fit one LoRa frame (no nonce is sent, and the
author reads the message without a slot of its own) and one that costs no bytes (the
body key is bound to the slots, so no reader misses damage). The PRIVATE payload::

    epk   32 bytes       fresh ephemeral X25519 public key, e_pk = X25519(e_sk, 9)
    slots 49 bytes x n   n = 1..7, one per recipient r:
                         slot i = secretbox(key = box_beforenm(r_pk, e_sk),
                                            nonce = SLOT_NONCE(i), msg = n (1) || K (32))
    body  16 + m bytes   secretbox(key = B, nonce = BODY_NONCE, msg = inner)

    K            = BLAKE2b-256(key = author's X25519 secret key, msg = epk,
                               person = "meshnode-pm-self")
    B            = BLAKE2b-256(key = K, msg = epk || slots, person = "meshnode-pm-body")
    SLOT_NONCE(i) = "meshnode-slot" zero-padded to 23 bytes, then the byte i
    BODY_NONCE   = "meshnode-body" zero-padded to 24 bytes

A recipient computes box_beforenm(epk, own secret key) once (one scalar multiplication),
tries the first 7 slot positions, learns n and K from the slot that opens, and opens the
body at 32 + 49 n. The author re-derives K from epk and its own secret key and tries the
body at each of the 7 possible offsets. The body key B binds every byte before the body,
so a reader also notices damage to the slots it cannot open. ``inner`` is the inner
content (codec/content.py: PrivateInner), which names the recipients to everyone who reads.

Encryption keys are X25519 keys derived from the identity's ed25519 seed, so the backup
words restore them: sk_g = clamp(BLAKE2b-256(key = seed, msg = g as 4 bytes big-endian,
person = "meshnode-enckey1")) for generation g = 0, 1, 2... (a new generation when a
person resets their key). A feed publishes its key in an ENCKEY entry (codec/content.py).

Security argument:

* Confidentiality: K is a PRF output under the author's secret key; each slot key is the
  X25519 shared secret of a fresh ephemeral key and a recipient key, hashed by HSalsa20
  (crypto_box's own key derivation), so only that recipient, or whoever holds e_sk (the
  author's device, which forgets it), can open the slot. XSalsa20-Poly1305 keeps the slot
  and body secret and authentic under these keys.
* Fixed nonces are safe because no key encrypts twice: every message has a fresh ephemeral
  key, so each slot key and K are new, each slot key seals one slot (recipients are
  deduplicated; the slot index is in the nonce as well), and B seals one body. This rests
  on the ephemeral key being fresh: a repeated e_sk with the same author key would repeat
  keystreams (as it would break any sealed box).
* Integrity: every byte is authenticated for every reader. The body key B is a PRF (keyed
  BLAKE2b) of K over epk and all the slots, so a changed byte anywhere before the body
  gives another B and the body's Poly1305 tag fails (as it does for a changed body byte);
  this also covers the author, who opens no slot, and X25519's ignored top bit of epk.
  A reader then gets PrivateMessageError, never plaintext.
* Who wrote it: the entry's ed25519 signature, not the box, says the author wrote it. A
  recipient learns K and could seal another body to the same slots, but cannot sign it
  into the author's feed; K, a PRF output, tells it nothing of the author's other messages.
* What a stranger learns: a slot is indistinguishable from random bytes without a
  recipient's key, so the payload reveals no recipient; it shows that a private message
  exists, its length (which bounds n: n <= (length - 48) / 49) and the entry's
  claimed time. The sender is the feed's author, which is public by design.
* Low-order keys: a recipient or ephemeral key whose shared secret is all zero is refused
  (libsodium's box_beforenm refuses it; the page checks the same).
* Not provided: forward secrecy (a stolen seed reads every past message to that person)
  and deniability (the author signs the entry).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nacl.bindings
import nacl.exceptions
import nacl.utils

from meshnode.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BODY_OVERHEAD_BYTES",
    "ENC_KEY_BYTES",
    "EPK_BYTES",
    "MAX_GENERATION",
    "MAX_RECIPIENTS",
    "MIN_PRIVATE_BYTES",
    "SLOT_BYTES",
    "EncKeypair",
    "PrivateMessageError",
    "enc_keypair",
    "enc_public_key",
    "is_usable_enc_key",
    "open_private",
    "private_size",
    "seal",
]

ENC_KEY_BYTES = 32
EPK_BYTES = 32
MAC_BYTES = 16
SLOT_BYTES = 1 + ENC_KEY_BYTES + MAC_BYTES  # n, K, tag: 49
BODY_OVERHEAD_BYTES = MAC_BYTES
MAX_RECIPIENTS = 7
MAX_GENERATION = (1 << 32) - 1  # the derivation writes the generation in 4 bytes
MIN_PRIVATE_BYTES = EPK_BYTES + SLOT_BYTES + BODY_OVERHEAD_BYTES

_ENCKEY_PERSON = b"meshnode-enckey1"
_SELF_PERSON = b"meshnode-pm-self"
_BODY_PERSON = b"meshnode-pm-body"
_SLOT_NONCE_PREFIX = b"meshnode-slot".ljust(23, b"\x00")
_BODY_NONCE = b"meshnode-body".ljust(24, b"\x00")
_NOT_FOR_US = "not addressed to this key (or its header is damaged)"
_NOT_OURS = "not written with this key (or damaged)"
_DAMAGED = "damaged: a slot opened but the message does not"


class PrivateMessageError(DecodeError):
    """A private message does not open with this key: not addressed to it, or damaged."""


@dataclass(frozen=True, slots=True)
class EncKeypair:
    """An X25519 encryption keypair of one generation."""

    secret_key: bytes
    public_key: bytes
    generation: int


def enc_keypair(seed: bytes, generation: int = 0) -> EncKeypair:
    """The X25519 keypair of ``generation`` derived from a 32-byte ed25519 seed."""
    if len(seed) != 32:
        raise ValueError("an ed25519 seed is 32 bytes")
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"an encryption key generation is 0..{MAX_GENERATION}")
    digest = hashlib.blake2b(
        generation.to_bytes(4, "big"), digest_size=32, key=seed, person=_ENCKEY_PERSON
    ).digest()
    secret = bytearray(digest)
    secret[0] &= 248
    secret[31] &= 127
    secret[31] |= 64
    secret_key = bytes(secret)
    return EncKeypair(
        secret_key=secret_key, public_key=enc_public_key(secret_key), generation=generation
    )


def enc_public_key(secret_key: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret key."""
    _check_key(secret_key, "secret key")
    return nacl.bindings.crypto_scalarmult_base(secret_key)


# 2**254, clamped as every X25519 scalar is: a multiple of 8, so it sends exactly the
# low-order points (those whose shared secret with any key is all zero) to zero.
_PROBE_SCALAR = bytes(31) + b"\x40"


def is_usable_enc_key(public_key: bytes) -> bool:
    """True for a 32-byte X25519 public key that is not a low-order point."""
    return len(public_key) == ENC_KEY_BYTES and _shared_key(_PROBE_SCALAR, public_key) is not None


def private_size(recipients: int, inner_bytes: int) -> int:
    """Bytes of a PRIVATE payload for ``recipients`` slots and an inner of ``inner_bytes``."""
    return EPK_BYTES + SLOT_BYTES * recipients + BODY_OVERHEAD_BYTES + inner_bytes


def seal(
    inner: bytes,
    recipient_pks: Sequence[bytes],
    author_enc_sk: bytes,
    *,
    ephemeral_sk: bytes | None = None,
) -> bytes:
    """Encrypt ``inner`` to 1..7 recipient keys (deduplicated, the author's own dropped).

    ``ephemeral_sk`` is random unless given (known-answer vectors only: never reuse one).

    Raises:
        ValueError: no recipient besides the author, more than 7, a key of the wrong length,
            or a low-order recipient key.
    """
    author_pk = enc_public_key(author_enc_sk)
    recipients = [pk for pk in dict.fromkeys(bytes(pk) for pk in recipient_pks) if pk != author_pk]
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"a private message has 1 to {MAX_RECIPIENTS} recipients besides you")
    e_sk = nacl.utils.random(32) if ephemeral_sk is None else ephemeral_sk
    epk = enc_public_key(e_sk)
    secret = _self_key(author_enc_sk, epk)
    header = bytes((len(recipients),)) + secret
    slots = [epk]
    for index, pk in enumerate(recipients):
        _check_key(pk, "recipient key")
        shared = _shared_key(e_sk, pk)
        if shared is None:
            raise ValueError(f"recipient key {index + 1} is a low-order point, not a usable key")
        slots.append(_secretbox(header, _slot_nonce(index), shared))
    head = b"".join(slots)
    return head + _secretbox(inner, _BODY_NONCE, _body_key(secret, head))


def open_private(
    payload: bytes, enc_sk: bytes, *, as_author: bool | None = None
) -> tuple[bytes, bool]:
    """Decrypt a PRIVATE payload with an X25519 secret key: (inner bytes, read as author).

    ``as_author`` True reads only as the author (for entries of one's own feed), False only
    as a recipient (for others' entries, saving the author's trials); None tries both.

    Raises:
        PrivateMessageError: not addressed to this key, or damaged (the message says which
            when it can tell; a damaged header looks like a message for someone else).
    """
    _check_key(enc_sk, "secret key")
    if len(payload) < MIN_PRIVATE_BYTES:
        raise PrivateMessageError(
            f"damaged: a private message is at least {MIN_PRIVATE_BYTES} bytes, got {len(payload)}"
        )
    if as_author is not False:
        secret = _self_key(enc_sk, payload[:EPK_BYTES])
        for count in range(1, _max_slots(len(payload)) + 1):
            inner = _open_body(payload, count, secret)
            if inner is not None:
                return inner, True
        if as_author:
            raise PrivateMessageError(_NOT_OURS)
    return _open_as_recipient(payload, enc_sk), False


def _open_as_recipient(payload: bytes, enc_sk: bytes) -> bytes:
    shared = _shared_key(enc_sk, payload[:EPK_BYTES])
    if shared is None:
        raise PrivateMessageError("damaged: its ephemeral key is a low-order point")
    for index in range(_max_slots(len(payload))):
        start = EPK_BYTES + SLOT_BYTES * index
        header = _open_secretbox(payload[start : start + SLOT_BYTES], _slot_nonce(index), shared)
        if header is None:
            continue
        count, secret = header[0], header[1:]
        if not index < count <= _max_slots(len(payload)):
            raise PrivateMessageError(f"damaged: slot {index + 1} names {count} slots")
        inner = _open_body(payload, count, secret)
        if inner is None:
            raise PrivateMessageError(_DAMAGED)
        return inner
    raise PrivateMessageError(_NOT_FOR_US)


def _max_slots(payload_bytes: int) -> int:
    room = (payload_bytes - EPK_BYTES - BODY_OVERHEAD_BYTES) // SLOT_BYTES
    return max(0, min(MAX_RECIPIENTS, room))


def _open_body(payload: bytes, count: int, secret: bytes) -> bytes | None:
    """The inner, if the body after ``count`` slots opens under the key bound to the head."""
    end = EPK_BYTES + SLOT_BYTES * count
    return _open_secretbox(payload[end:], _BODY_NONCE, _body_key(secret, payload[:end]))


def _self_key(author_enc_sk: bytes, epk: bytes) -> bytes:
    """K: the secret every slot carries, which the author derives again from epk."""
    return hashlib.blake2b(epk, digest_size=32, key=author_enc_sk, person=_SELF_PERSON).digest()


def _body_key(secret: bytes, head: bytes) -> bytes:
    """B: the body key, bound to epk and every slot."""
    return hashlib.blake2b(head, digest_size=32, key=secret, person=_BODY_PERSON).digest()


def _slot_nonce(index: int) -> bytes:
    return _SLOT_NONCE_PREFIX + bytes((index,))


def _shared_key(secret_key: bytes, public_key: bytes) -> bytes | None:
    """crypto_box_beforenm, or None when the X25519 result is all zero (a low-order key)."""
    try:
        return nacl.bindings.crypto_box_beforenm(public_key, secret_key)
    except nacl.exceptions.CryptoError:
        return None


def _secretbox(message: bytes, nonce: bytes, key: bytes) -> bytes:
    return nacl.bindings.crypto_secretbox_easy(message, nonce, key)


def _open_secretbox(box: bytes, nonce: bytes, key: bytes) -> bytes | None:
    try:
        return nacl.bindings.crypto_secretbox_open_easy(box, nonce, key)
    except nacl.exceptions.CryptoError:
        return None


def _check_key(key: bytes, name: str) -> None:
    if len(key) != ENC_KEY_BYTES:
        raise ValueError(f"an X25519 {name} is {ENC_KEY_BYTES} bytes, got {len(key)}")

"""Ed25519 identities, the network key, and the text forms of ids.

The network key separates networks: every signature covers ``network_key || body``, so an
entry signed for one network never verifies in another. Key files are read and written by
the shell (``host/datadir.py``); this module only holds keys in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

from meshnode.errors import DecodeError, VerifyError
from meshnode.types import FeedId, MsgId

__all__ = [
    "DEFAULT_NETWORK_KEY",
    "KEY_BYTES",
    "SIGNATURE_BYTES",
    "Identity",
    "format_feed_id",
    "format_msg_id",
    "network_tag",
    "parse_feed_id",
    "parse_msg_id",
    "parse_network_key",
    "verify_signature",
]

KEY_BYTES = 32
SIGNATURE_BYTES = 64

# The public network every meshnode joins unless told otherwise; a community makes a
# private one with `meshnode init --new-network`.
DEFAULT_NETWORK_KEY = hashlib.sha256(b"meshnode public network, version 1").digest()


@dataclass(frozen=True, slots=True)
class Identity:
    """An ed25519 keypair; the public half is the feed id."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != KEY_BYTES:
            raise ValueError("an ed25519 seed is 32 bytes")

    @property
    def _signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def feed_id(self) -> FeedId:
        """Public key, which names this identity's feed."""
        return FeedId(bytes(self._signing_key.verify_key))

    def sign(self, network_key: bytes, body: bytes) -> bytes:
        """Detached 64-byte signature over ``network_key || body``."""
        return self._signing_key.sign(network_key + body).signature

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls(seed=bytes(nacl.signing.SigningKey.generate()))


def verify_signature(feed: FeedId, network_key: bytes, body: bytes, signature: bytes) -> None:
    """Raise VerifyError unless ``signature`` is ``feed``'s over ``network_key || body``."""
    try:
        nacl.bindings.crypto_sign_open(signature + network_key + body, feed)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise VerifyError("bad signature") from exc


def format_feed_id(feed: FeedId) -> str:
    """SSB text form: ``@<base64>.ed25519``."""
    return "@" + base64.b64encode(feed).decode("ascii") + ".ed25519"


def parse_feed_id(text: str) -> FeedId:
    """Parse ``@<base64>.ed25519`` (the ``@`` may be omitted); DecodeError if malformed."""
    return FeedId(_parse_id(text, "@", ".ed25519", ("a", "feed id")))


def parse_msg_id(text: str) -> MsgId:
    """Parse ``%<base64>.sha256`` (the ``%`` may be omitted); DecodeError if malformed."""
    return MsgId(_parse_id(text, "%", ".sha256", ("an", "entry id")))


def _parse_id(text: str, sigil: str, suffix: str, name: tuple[str, str]) -> bytes:
    article, what = name
    body = text.strip().removeprefix(sigil)
    if not body.endswith(suffix):
        raise DecodeError(f"not {article} {what} (expected {sigil}<base64>{suffix}): {text!r}")
    try:
        raw = base64.b64decode(body.removesuffix(suffix), validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise DecodeError(f"{what} is not valid base64: {text!r}") from exc
    if len(raw) != KEY_BYTES:
        raise DecodeError(f"{what} must hold 32 bytes, got {len(raw)}: {text!r}")
    return raw


def format_msg_id(msg: MsgId) -> str:
    """SSB text form: ``%<base64>.sha256``."""
    return "%" + base64.b64encode(msg).decode("ascii") + ".sha256"


def network_tag(network_key: bytes) -> str:
    """Short public tag of a network key (8 hex digits); reveals nothing of the key."""
    return hashlib.sha256(b"meshnode network tag" + network_key).hexdigest()[:8]


def parse_network_key(text: str) -> bytes:
    """Parse a 64-hex-digit network key; DecodeError if malformed."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise DecodeError("network key must be 64 hex digits") from exc
    if len(key) != KEY_BYTES:
        raise DecodeError(f"network key must be 32 bytes (64 hex digits), got {len(key)}")
    return key

"""Private-message benchmark: what encryption costs next to a public post's signature.

All figures come from this process, on fixed keys (the ephemeral key is fresh per message,
as in use):

* ``encrypt_per_s_1``, ``encrypt_per_s_7``: ``seal`` of a 50-byte text (its inner: type,
  recipient tags, text) to 1 and to 7 recipients, per second;
* ``decrypt_per_s``: ``open_private`` of a one-recipient message by its recipient (the
  author's trial first, as a reader that does not know its role does), per second;
* ``sign_per_s``, ``verify_per_s``: ed25519 over a 50-byte public post's entry body, the
  work a public post costs its author and each receiver, per second;
* ``bytes_1``, ``bytes_7``: the short form (what goes on the air to a receiver that holds
  the previous entry) of the entry carrying a 50-byte message to 1 and 7 recipients, and
  ``post_bytes`` the same for a public 50-byte post;
* ``fits_one_lora_frame``: 1 when ``bytes_1`` fits the entry room of one LoRa frame at the
  default radio settings (an RNode's MTU, less the link and ENTRY message headers), else 0;
* ``inbox_1000_s``: a phone opening the page's inbox on a box of 1,000 private entries, in
  headless Chromium, until its messages are found and decrypted (bench/private_inbox.py;
  ``inbox=False`` leaves it out, as None).

Each rate is the median of ``rounds`` timed runs of ``min_s`` or more.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from meshnode.bench.private_inbox import inbox_1000_s
from meshnode.codec.channel import encode_entry_message
from meshnode.codec.content import PrivateInner, encode_private_inner, recipient_tag
from meshnode.codec.message import ContentType, Entry, create_entry, encode_short_entry
from meshnode.radio import rnode
from meshnode.radio.fragment import max_payload
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, verify_signature
from meshnode.secure.private import enc_keypair, open_private, seal
from meshnode.types import MsgId, Seq

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LORA_ENTRY_BYTES", "bench_private", "private_entry_bytes"]

# An entry's room in one LoRa frame at the default radio settings (as web/api.py counts it).
LORA_ENTRY_BYTES = max_payload(rnode.MTU_BYTES) - len(
    encode_entry_message(bytes(4), bytes(4), 1 << 20, b"")
)
_TEXT = b"Meet at the well at noon; bring the two blue jugs."  # 50 bytes
_TIMESTAMP_MS = 1_764_662_400_000


def _identity(n: int) -> Identity:
    return Identity(bytes([n]) * 32)


def _inner(count: int) -> bytes:
    tags = tuple(recipient_tag(_identity(2 + i).feed_id) for i in range(count))
    inner = PrivateInner(content_type=ContentType.POST, recipient_tags=tags, payload=_TEXT)
    return encode_private_inner(inner)


def _entry(content_type: ContentType, content: bytes) -> Entry:
    """A seq-2 entry of identity 1 (a timestamp of today's size) with this content."""
    return create_entry(
        _identity(1),
        DEFAULT_NETWORK_KEY,
        seq=Seq(2),
        previous=MsgId(bytes(32)),
        timestamp_ms=_TIMESTAMP_MS,
        content_type=content_type,
        content=content,
    )


def _short_bytes(content_type: ContentType, content: bytes) -> int:
    """Short-form bytes (what goes on the air) of an entry with this content."""
    return len(encode_short_entry(_entry(content_type, content)))


def private_entry_bytes(count: int) -> int:
    """Short-form bytes of an entry with a 50-byte private message to ``count`` recipients."""
    author = enc_keypair(_identity(1).seed)
    pks = [enc_keypair(_identity(2 + i).seed).public_key for i in range(count)]
    return _short_bytes(ContentType.PRIVATE, seal(_inner(count), pks, author.secret_key))


def _rate(work: Callable[[], object], min_s: float, rounds: int) -> float:
    """Median calls per second over ``rounds`` runs of at least ``min_s`` each."""
    rates = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_s:
            for _ in range(50):
                work()
            calls += 50
        rates.append(calls / elapsed)
    return round(statistics.median(rates), 1)


def bench_private(min_s: float = 0.5, rounds: int = 5, *, inbox: bool = True) -> dict[str, object]:
    """Measure and return the figures."""
    author = enc_keypair(_identity(1).seed)
    keys = [enc_keypair(_identity(2 + i).seed) for i in range(7)]
    inner_1, inner_7 = _inner(1), _inner(7)
    pks_1, pks_7 = [keys[0].public_key], [k.public_key for k in keys]
    message = seal(inner_1, pks_1, author.secret_key)
    poster = _identity(1)
    body = _entry(ContentType.POST, _TEXT).body
    signature = poster.sign(DEFAULT_NETWORK_KEY, body)
    bytes_1, bytes_7 = private_entry_bytes(1), private_entry_bytes(7)
    return {
        "encrypt_per_s_1": _rate(lambda: seal(inner_1, pks_1, author.secret_key), min_s, rounds),
        "encrypt_per_s_7": _rate(lambda: seal(inner_7, pks_7, author.secret_key), min_s, rounds),
        "decrypt_per_s": _rate(lambda: open_private(message, keys[0].secret_key), min_s, rounds),
        "sign_per_s": _rate(lambda: poster.sign(DEFAULT_NETWORK_KEY, body), min_s, rounds),
        "verify_per_s": _rate(
            lambda: verify_signature(poster.feed_id, DEFAULT_NETWORK_KEY, body, signature),
            min_s,
            rounds,
        ),
        "bytes_1": bytes_1,
        "bytes_7": bytes_7,
        "post_bytes": _short_bytes(ContentType.POST, _TEXT),
        "lora_entry_bytes": LORA_ENTRY_BYTES,
        "fits_one_lora_frame": int(bytes_1 <= LORA_ENTRY_BYTES),
        "inbox_1000_s": inbox_1000_s() if inbox else None,
    }

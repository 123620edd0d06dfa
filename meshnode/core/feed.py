"""Append-only rules for one feed: signature, seq continuity, previous hash, forks.

A node holds one contiguous range a..b of each feed. The first entry it takes of a feed
may have any seq (capped nodes start mid-feed); every later one must be b+1 and name
entry b's id as previous. A feed kept to its newest ``cap`` entries may instead restart
at an entry s past a gap when s - cap >= b (``restarts_at``): none of a..b would be among
the newest ``cap`` once s is held, so nothing it keeps is lost; the chain is checked from
s on. Two valid, different entries for one (author, seq) prove a fork, and so does a
valid entry b+1 whose previous is not entry b.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from meshnode.codec.content import decode_about, decode_contact, decode_post, decode_reply
from meshnode.codec.message import ContentType, Entry
from meshnode.errors import VerifyError
from meshnode.secure.identity import verify_signature

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.types import MsgId, Seq

__all__ = [
    "FeedHead",
    "IngestResult",
    "Outcome",
    "Verdict",
    "check_content",
    "judge_entry",
    "restarts_at",
]


@dataclass(frozen=True, slots=True)
class FeedHead:
    """What a node holds of a feed: seq range first..latest and entry latest's id."""

    first: Seq
    latest: Seq
    latest_id: MsgId


class Verdict(Enum):
    """What to do with an entry whose signature is already known to be valid."""

    APPEND = "append"  # the next entry (or the first one held)
    HELD = "held"  # already stored, same bytes
    FORK = "fork"  # proves a fork: keep as proof, stop the feed
    GAP = "gap"  # later than latest+1: cannot be chained yet
    BEFORE = "before"  # earlier than the range held: cannot be chained


class Outcome(Enum):
    """What ingest did with an entry."""

    ADDED = "added"
    HELD = "held"
    UNWANTED = "unwanted"
    REJECTED = "rejected"
    FORKED = "forked"


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """Outcome of one ingest, with the reason when it was not added."""

    outcome: Outcome
    reason: str = ""
    entry: Entry | None = None


def judge_entry(entry: Entry, head: FeedHead | None, stored_id: MsgId | None) -> Verdict:
    """Place a signature-checked entry against the feed's head.

    ``stored_id`` is the id of the stored entry with the same seq, when one is held.
    """
    if head is None:
        return Verdict.APPEND
    seq = entry.seq
    if seq == head.latest + 1:
        return Verdict.APPEND if entry.previous == head.latest_id else Verdict.FORK
    if seq > head.latest:
        return Verdict.GAP
    if seq < head.first:
        return Verdict.BEFORE
    return Verdict.HELD if stored_id == entry.id else Verdict.FORK


def restarts_at(seq: int, latest: int, cap: int | None) -> bool:
    """Whether a feed held up to ``latest`` and kept to its newest ``cap`` entries (None:
    kept whole) takes entry ``seq`` as its new first one, past a gap."""
    return cap is not None and seq > latest + 1 and seq - cap >= latest


# Content types whose bytes the node checks before it stores an entry; others are opaque.
_CONTENT_DECODERS: dict[int, Callable[[bytes], object]] = {
    ContentType.POST: decode_post,
    ContentType.CONTACT: decode_contact,
    ContentType.REPLY: decode_reply,
    ContentType.ABOUT: decode_about,
}


def check_content(
    entry: Entry, network_key: bytes, max_content_bytes: int, signature_ok: bool | None = None
) -> None:
    """Verify the signature (unless ``signature_ok`` already says) and that the content
    decodes for its type.

    Raises:
        VerifyError: bad signature.
        DecodeError: content does not decompress or does not fit its type.
    """
    if signature_ok is None:
        verify_signature(entry.author, network_key, entry.body, entry.signature)
    elif not signature_ok:
        raise VerifyError("bad signature")
    decode = _CONTENT_DECODERS.get(entry.content_type)
    if entry.compressed or decode is not None:
        plain = entry.plain_content(max_content_bytes)
        if decode is not None:
            decode(plain)

"""The seam through which the shell checks signatures of many entries ahead of the node.

The node checks entries in order on one thread; a shell with more cores hands it a
``Verifier`` that checks the signatures of the entries coming next on other threads (the
check releases the GIL), and passes each verdict to ``Node.ingest``. The core keeps no
threads: ``InlineVerifier`` leaves every check to the node, at its turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from meshnode.errors import VerifyError
from meshnode.secure.identity import SIGNATURE_BYTES, verify_signature
from meshnode.types import FeedId

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

__all__ = ["InlineVerifier", "Verifier", "signature_valid", "signatures_valid"]

_AUTHOR_END = 33  # header byte, then the author's 32-byte key


class Verifier(Protocol):
    """Pairs each raw full-form entry, in order, with its signature's verdict or None."""

    def checked(
        self, raws: Iterable[bytes], network_key: bytes
    ) -> Generator[tuple[bytes, bool | None]]:
        """``(raw, True/False)`` when checked here, ``(raw, None)`` for the node to check;
        closing the generator early ends what checks ahead."""
        ...


class InlineVerifier:
    """Checks nothing ahead: the node verifies each entry itself when it comes to it."""

    def checked(
        self, raws: Iterable[bytes], network_key: bytes
    ) -> Generator[tuple[bytes, bool | None]]:
        """Every entry with None."""
        for raw in raws:
            yield raw, None


def signature_valid(raw: bytes, network_key: bytes) -> bool | None:
    """Whether a full-form entry's signature is its author's over key || body; None if
    ``raw`` is too short to carry one (the node rejects it as malformed)."""
    if len(raw) < _AUTHOR_END + SIGNATURE_BYTES:
        return None
    # Exactly the check feed.check_content makes on the decoded entry.
    author = FeedId(raw[1:_AUTHOR_END])
    try:
        verify_signature(author, network_key, raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:])
    except VerifyError:
        return False
    return True


def signatures_valid(raws: list[bytes], network_key: bytes) -> list[bool | None]:
    """``signature_valid`` of each of ``raws`` (a worker's batch)."""
    return [signature_valid(raw, network_key) for raw in raws]

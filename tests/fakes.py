"""Fixed keys and entry chains for tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.types import MsgId, Seq

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TS_MS", "entry_from_vector", "everyone_follows", "identity", "make_chain"]

TS_MS = 1_700_000_000_000


def identity(n: int) -> Identity:
    """A fixed identity per small integer."""
    return Identity(bytes([n % 256]) * 32)


def make_chain(
    who: Identity,
    count: int,
    *,
    start: int = 1,
    previous: MsgId | None = None,
    network_key: bytes = DEFAULT_NETWORK_KEY,
    size: int = 20,
) -> list[Entry]:
    """``count`` POST entries of ``who`` from seq ``start``, chained."""
    out: list[Entry] = []
    for seq in range(start, start + count):
        text = f"post {seq} ".ljust(size, "x").encode()
        entry = create_entry(
            who,
            network_key,
            seq=Seq(seq),
            previous=previous,
            timestamp_ms=TS_MS + seq,
            content_type=ContentType.POST,
            content=text,
        )
        out.append(entry)
        previous = entry.id
    return out


class Follows(Protocol):
    """A simulated mesh or radio channel whose node i can follow node j."""

    def follow(self, i: int, j: int) -> None: ...


def everyone_follows(mesh: Follows, n: int) -> None:
    """Each of the ``n`` nodes follows every other one."""
    for i in range(n):
        for j in range(n):
            if i != j:
                mesh.follow(i, j)


def entry_from_vector(case: Mapping[str, Any]) -> Entry:
    """Sign the fields of a known-answer entry vector (tests/vectors/*.json) afresh."""
    previous = bytes.fromhex(case["previous_hex"]) if case["previous_hex"] else None
    return create_entry(
        Identity(bytes.fromhex(case["seed_hex"])),
        bytes.fromhex(case["network_key_hex"]),
        seq=Seq(case["seq"]),
        previous=MsgId(previous) if previous else None,
        timestamp_ms=case["timestamp_ms"],
        content_type=case["content_type"],
        content=bytes.fromhex(case["content_plain_hex"]),
    )

"""Signatures checked by a pool of workers give the node exactly what one thread gives."""

from __future__ import annotations

import random
import tempfile
from contextlib import nullcontext
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.content import Contact, ContactAction, encode_contact
from meshnode.codec.message import ContentType, Entry, create_entry
from meshnode.core.node import Node
from meshnode.core.verifier import InlineVerifier, Verifier, signatures_valid
from meshnode.host.importer import ImportTally, ingest_all
from meshnode.host.verify import PoolVerifier
from meshnode.host.verify_worker import decode_batch, decode_verdicts, encode_batch, reply
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import MsgId, Seq
from tests.fakes import TS_MS, identity, make_chain

ME, A, B, C = identity(40), identity(41), identity(42), identity(43)  # C: followed by A only
CHAINS = {who.feed_id: make_chain(who, 6) for who in (A, B, C)}
FORKS = {who.feed_id: make_chain(who, 6, size=25) for who in (A, B, C)}  # same seqs, other bytes


def _a_follows_c() -> list[Entry]:
    """A's chain with a follow of C at seq 3: C becomes wanted in the middle of a batch."""
    chain = CHAINS[A.feed_id][:2]
    previous: MsgId = chain[-1].id
    for seq in range(3, 7):
        kind, content = (
            (
                ContentType.CONTACT,
                encode_contact(Contact(action=ContactAction.FOLLOW, target=C.feed_id)),
            )
            if seq == 3
            else (ContentType.POST, f"a {seq}".encode())
        )
        entry = create_entry(
            A, DEFAULT_NETWORK_KEY, seq=Seq(seq), previous=previous,
            timestamp_ms=TS_MS + seq, content_type=kind, content=content,
        )  # fmt: skip
        chain.append(entry)
        previous = entry.id
    return chain


CHAINS[A.feed_id] = _a_follows_c()
FEEDS = list(CHAINS)


def _raw(kind: str, feed: int, seq: int) -> bytes:
    """One entry of the mix: valid, a fork, a forged one, or garbage."""
    author = FEEDS[feed]
    raw = (FORKS if kind == "fork" else CHAINS)[author][seq - 1].raw
    if kind == "forged_signature":
        return raw[:-1] + bytes([raw[-1] ^ 1])
    if kind == "forged_body":  # same signature over other bytes
        return raw[:40] + bytes([raw[40] ^ 1]) + raw[41:]
    if kind == "garbage":
        return raw[: 20 + seq * 12]
    return raw


ENTRIES = st.builds(
    _raw,
    st.sampled_from(["valid"] * 4 + ["fork", "forged_signature", "forged_body", "garbage"]),
    st.integers(0, len(FEEDS) - 1),
    st.integers(1, 6),
)
MIXES = st.lists(ENTRIES, max_size=60)


def _run(
    root: Path, raws: list[bytes], verifier: Verifier, *, held: bool = False
) -> tuple[list[str], bytes, str]:
    """Outcomes of each entry (with the store's appends held in one write if ``held``),
    then of a batch import, and the store's log bytes."""
    store = FileStore(root, StoreConfig())
    node = Node(ME, network_key=DEFAULT_NETWORK_KEY, store=store, rng=random.Random(1),
                verifier=verifier)  # fmt: skip
    for who in (A, B):
        node.set_contact(ContactAction.FOLLOW, who.feed_id, timestamp_ms=TS_MS)
    outcomes = []
    with store.holding() if held else nullcontext():
        for raw, ok in verifier.checked(raws, DEFAULT_NETWORK_KEY):
            result = node.ingest(raw, signature_ok=ok)
            outcomes.append(f"{result.outcome.value}: {result.reason}")
    tally = ImportTally()  # the same again, as a bundle: all held, or the same rejections
    for _ in ingest_all(node, raws, tally):
        pass
    node.close()
    log = b"".join(p.read_bytes() for p in sorted((root / "log").iterdir()))
    return outcomes, log, repr(tally.to_json())


@given(st.lists(st.one_of(ENTRIES, st.binary())))
def test_a_worker_checks_as_the_node_does(raws: list[bytes]) -> None:
    """The worker process's check and pipe format give ``signatures_valid``'s verdicts."""
    sent = decode_batch(encode_batch(raws))
    assert sent == raws
    assert decode_verdicts(reply(sent, DEFAULT_NETWORK_KEY)) == signatures_valid(
        raws, DEFAULT_NETWORK_KEY
    )


@settings(max_examples=30, deadline=None)  # each example starts worker processes twice
@given(MIXES)
def test_pool_matches_one_thread(raws: list[bytes]) -> None:
    pool = PoolVerifier(2, batch_entries=3, check_while_starting=False)  # several in flight
    with _tmp() as tmp:
        one = _run(Path(tmp) / "one", raws, InlineVerifier())
        many = _run(Path(tmp) / "many", raws, pool, held=True)
    assert many == one


def _tmp() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="meshnode-verify-")


def test_a_forged_entry_is_rejected_alone() -> None:
    chain = CHAINS[B.feed_id]
    forged = _raw("forged_signature", 1, 2)
    raws = [chain[0].raw, forged, chain[1].raw, chain[2].raw]
    with _tmp() as tmp:
        outcomes = _run(
            Path(tmp), raws, PoolVerifier(2, batch_entries=1, check_while_starting=False)
        )[0]
    assert outcomes == ["added: ", "rejected: bad signature", "added: ", "added: "]

"""Private messages: known answers, who can read, damage, and the size on the air."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.codec.channel import encode_entry_message
from meshnode.codec.content import PrivateInner, decode_private_inner, encode_private_inner
from meshnode.codec.message import ContentType, create_entry, decode_entry, encode_short_entry
from meshnode.core.feed import check_content
from meshnode.errors import DecodeError
from meshnode.radio import rnode
from meshnode.radio.fragment import max_payload
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.private import (
    MAX_RECIPIENTS,
    MIN_PRIVATE_BYTES,
    SLOT_BYTES,
    PrivateMessageError,
    enc_keypair,
    enc_public_key,
    open_private,
    private_size,
    seal,
)
from meshnode.types import FeedId, Seq
from tests.fakes import identity

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "private.json").read_text()
)
MESSAGES: list[dict[str, Any]] = VECTORS["messages"]
# An entry's room in one LoRa frame at the default radio settings (an RNode): the link
# packet's payload less an ENTRY message's header with a 3-byte seq (as web/api.py counts).
LORA_ENTRY_BYTES = max_payload(rnode.MTU_BYTES) - len(
    encode_entry_message(bytes(4), bytes(4), 1 << 20, b"")
)
# The small-order X25519 points (as libsodium lists them) and their twins with the top bit set.
_SMALL_ORDER = [
    bytes(32),
    bytes((1,)) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]
LOW_ORDER_KEYS = _SMALL_ORDER + [p[:31] + bytes((p[31] | 0x80,)) for p in _SMALL_ORDER]


def seed_of(case: dict[str, Any], prefix: str = "") -> bytes:
    return bytes.fromhex(case[f"{prefix}seed_hex"])


def author_key(case: dict[str, Any]) -> bytes:
    return enc_keypair(seed_of(case, "author_"), case["author_generation"]).secret_key


def recipient_keys(case: dict[str, Any]) -> list[bytes]:
    return [enc_keypair(seed_of(r), r["generation"]).secret_key for r in case["recipients"]]


def sealed_to(count: int, rng: random.Random, text: bytes = b"x" * 50) -> tuple[bytes, list[bytes]]:
    """A message from identity 1 to ``count`` recipients, and the recipients' secret keys."""
    keys = [enc_keypair(rng.randbytes(32)).secret_key for _ in range(count)]
    pks = [enc_public_key(k) for k in keys]
    return seal(text, pks, enc_keypair(identity(1).seed).secret_key), keys


@pytest.mark.parametrize("case", VECTORS["keys"], ids=lambda c: f"gen{c['generation']}")
def test_key_derivation_vectors(case: dict[str, Any]) -> None:
    pair = enc_keypair(seed_of(case), case["generation"])
    assert (pair.secret_key.hex(), pair.public_key.hex()) == (
        case["secret_hex"],
        case["public_hex"],
    )


def test_each_generation_is_another_key() -> None:
    seed = identity(1).seed
    assert len({enc_keypair(seed, g).public_key for g in range(4)}) == 4
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError, match="generation"):
            enc_keypair(seed, bad)


@pytest.mark.parametrize("case", MESSAGES, ids=lambda c: c["name"])
def test_message_vectors(case: dict[str, Any]) -> None:
    inner = bytes.fromhex(case["inner_hex"])
    fields = case["inner"]
    made = PrivateInner(
        content_type=ContentType(fields["content_type"]),
        recipient_tags=tuple(bytes.fromhex(t) for t in fields["recipient_tags_hex"]),
        payload=bytes.fromhex(fields["payload_hex"]),
    )
    assert encode_private_inner(made) == inner
    assert decode_private_inner(inner) == made
    pks = [enc_keypair(seed_of(r), r["generation"]).public_key for r in case["recipients"]]
    ephemeral = bytes.fromhex(case["ephemeral_sk_hex"])
    payload = seal(inner, pks, author_key(case), ephemeral_sk=ephemeral)
    assert payload.hex() == case["payload_hex"]
    assert len(payload) == private_size(case["slots"], len(inner))
    assert open_private(payload, author_key(case)) == (inner, True)
    for key in recipient_keys(case):
        if key != author_key(case):
            assert open_private(payload, key) == (inner, False)


@pytest.mark.parametrize("case", MESSAGES, ids=lambda c: c["name"])
def test_entry_vectors_verify(case: dict[str, Any]) -> None:
    vector = case["entry"]
    entry = create_entry(
        Identity(seed_of(vector)),
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=vector["timestamp_ms"],
        content_type=ContentType.PRIVATE,
        content=bytes.fromhex(case["payload_hex"]),
    )
    assert entry.raw.hex() == vector["full_hex"]  # encrypted bytes never compress
    assert encode_short_entry(entry).hex() == vector["short_hex"]
    check_content(decode_entry(entry.raw), DEFAULT_NETWORK_KEY, 8192)


def test_one_recipient_and_fifty_bytes_fit_one_lora_frame() -> None:
    case = MESSAGES[0]
    assert len(bytes.fromhex(case["inner"]["payload_hex"])) == 50
    assert case["slots"] == 1
    short = bytes.fromhex(case["entry"]["short_hex"])
    assert len(short) == 1 + 6 + 1 + (32 + 49 + 16 + 1 + 1 + 8 + 50) + 64 == 229
    assert LORA_ENTRY_BYTES == 239
    assert len(short) <= LORA_ENTRY_BYTES


def test_duplicates_and_the_author_get_no_slot() -> None:
    case = next(c for c in MESSAGES if c["name"] == "duplicates_and_author_dropped")
    assert len(case["recipients"]) == 4
    assert case["slots"] == 2
    assert len(bytes.fromhex(case["payload_hex"])) == private_size(2, len(case["inner_hex"]) // 2)


@pytest.mark.parametrize("case", MESSAGES, ids=lambda c: c["name"])
def test_a_third_key_the_box_and_a_feed_only_node_cannot_read(case: dict[str, Any]) -> None:
    payload = bytes.fromhex(case["payload_hex"])
    third = enc_keypair(bytes.fromhex(VECTORS["third_seed_hex"])).secret_key
    box = enc_keypair(identity(200).seed).secret_key  # the box's own identity, keys on phones
    for key in (third, box):
        with pytest.raises(PrivateMessageError, match=r"^not addressed to this key"):
            open_private(payload, key)
    # A node holding only the feed has the signed bytes and nothing else: the text is not there.
    raw = bytes.fromhex(case["entry"]["full_hex"])
    text = bytes.fromhex(case["inner"]["payload_hex"])
    assert text[-16:] not in raw
    for tag in case["inner"]["recipient_tags_hex"]:
        assert bytes.fromhex(tag) not in raw


def test_an_older_generation_does_not_read_a_newer_ones_mail() -> None:
    case = MESSAGES[0]
    recipient = case["recipients"][0]
    other = enc_keypair(seed_of(recipient), recipient["generation"] + 1).secret_key
    with pytest.raises(PrivateMessageError, match="not addressed"):
        open_private(bytes.fromhex(case["payload_hex"]), other)


@pytest.mark.parametrize("case", MESSAGES[:2], ids=lambda c: c["name"])
def test_a_flipped_byte_anywhere_is_an_error_for_every_reader(case: dict[str, Any]) -> None:
    payload = bytes.fromhex(case["payload_hex"])
    readers = [author_key(case), *recipient_keys(case)]
    for position in range(len(payload)):
        for bit in (0x01, 0x80):
            damaged = bytearray(payload)
            damaged[position] ^= bit
            for key in readers:
                with pytest.raises(PrivateMessageError):
                    open_private(bytes(damaged), key)


def test_the_error_says_damaged_when_it_can_tell() -> None:
    case = MESSAGES[0]
    payload = bytearray.fromhex(case["payload_hex"])
    payload[-1] ^= 0x01  # the body's last byte: the slot still opens
    recipient = recipient_keys(case)[0]
    with pytest.raises(PrivateMessageError, match=r"^damaged"):
        open_private(bytes(payload), recipient)
    for cut in (0, 1, MIN_PRIVATE_BYTES - 1):
        with pytest.raises(PrivateMessageError, match=r"^damaged: a private message is at least"):
            open_private(bytes(payload[:cut]), recipient)
    assert issubclass(PrivateMessageError, DecodeError)


def test_truncated_and_extended_messages_do_not_open() -> None:
    case = MESSAGES[1]
    payload = bytes.fromhex(case["payload_hex"])
    readers = [author_key(case), *recipient_keys(case)]
    for damaged in (payload[:-1], payload + b"\x00", payload[:32] + payload[81:]):
        for key in readers:
            with pytest.raises(PrivateMessageError):
                open_private(damaged, key)


@pytest.mark.parametrize("count", range(1, MAX_RECIPIENTS + 1))
def test_one_to_seven_recipients_round_trip(count: int) -> None:
    rng = random.Random(count)
    text = rng.randbytes(rng.randrange(0, 300))
    payload, keys = sealed_to(count, rng, text)
    assert len(payload) == private_size(count, len(text))
    assert open_private(payload, enc_keypair(identity(1).seed).secret_key) == (text, True)
    for key in keys:
        assert open_private(payload, key) == (text, False)


def test_seal_refuses_bad_recipient_lists() -> None:
    rng = random.Random(4)
    author = enc_keypair(identity(1).seed)
    eight = [enc_keypair(rng.randbytes(32)).public_key for _ in range(8)]
    for recipients, problem in (
        ([], "1 to 7 recipients"),
        ([author.public_key], "1 to 7 recipients"),
        (eight, "1 to 7 recipients"),
        ([bytes(31)], "32 bytes"),
    ):
        with pytest.raises(ValueError, match=problem):
            seal(b"hi", recipients, author.secret_key)
    # Seven distinct recipients plus repeats and the author are fine.
    assert len(seal(b"hi", eight[:7] * 2 + [author.public_key], author.secret_key)) == (
        private_size(7, 2)
    )


@pytest.mark.parametrize("point", LOW_ORDER_KEYS, ids=lambda p: p.hex()[:8])
def test_low_order_keys_are_refused(point: bytes) -> None:
    author = enc_keypair(identity(1).seed)
    good = enc_keypair(identity(2).seed).public_key
    with pytest.raises(ValueError, match="low-order"):
        seal(b"hi", [good, point], author.secret_key)
    # A message whose ephemeral key is low order opens for nobody, and says it is damaged.
    payload = point + bytes.fromhex(MESSAGES[0]["payload_hex"])[32:]
    with pytest.raises(PrivateMessageError, match="damaged: its ephemeral key"):
        open_private(payload, enc_keypair(identity(2).seed).secret_key)


def test_a_stranger_sees_only_size() -> None:
    """Messages of one size look alike whoever they are for, and never repeat."""
    author = enc_keypair(identity(1).seed).secret_key
    bob, carol = (enc_keypair(identity(n).seed).public_key for n in (2, 3))
    first = seal(b"a" * 50, [bob], author)
    second = seal(b"a" * 50, [carol], author)
    third = seal(b"a" * 50, [bob], author)
    assert len(first) == len(second) == len(third)
    # A fresh ephemeral key each time: no byte pattern marks a recipient or repeats.
    for one, other in ((first, second), (first, third)):
        assert sum(a == b for a, b in zip(one, other, strict=True)) < len(one) // 16


@given(st.binary(max_size=600))
def test_any_bytes_open_or_raise_private_message_error(data: bytes) -> None:
    key = enc_keypair(identity(2).seed).secret_key
    try:
        open_private(data, key)
    except PrivateMessageError:
        return
    pytest.fail("random bytes opened")  # pragma: no cover


def test_a_wrong_key_length_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        open_private(bytes.fromhex(MESSAGES[0]["payload_hex"]), bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        enc_keypair(bytes(31))


def test_feed_ids_are_not_keys() -> None:
    """An ed25519 feed id is not an encryption key: a message sealed to it opens for no one."""
    author = enc_keypair(identity(1).seed)
    feed: FeedId = identity(2).feed_id
    payload = seal(b"hi", [feed], author.secret_key)
    with pytest.raises(PrivateMessageError):
        open_private(payload, enc_keypair(identity(2).seed).secret_key)


def test_a_reader_may_say_which_role_it_reads_in() -> None:
    case = MESSAGES[0]
    payload = bytes.fromhex(case["payload_hex"])
    inner = bytes.fromhex(case["inner_hex"])
    author, recipient = author_key(case), recipient_keys(case)[0]
    assert open_private(payload, author, as_author=True) == (inner, True)
    assert open_private(payload, recipient, as_author=False) == (inner, False)
    with pytest.raises(PrivateMessageError, match="not written with this key"):
        open_private(payload, recipient, as_author=True)
    with pytest.raises(PrivateMessageError, match="not addressed to this key"):
        open_private(payload, author, as_author=False)


def crafted(named: int, slots: int, recipient_pk: bytes) -> bytes:
    """A payload whose first slot, sealed to ``recipient_pk``, names ``named`` slots."""
    e_sk = bytes([3]) * 32
    shared = nacl.bindings.crypto_box_beforenm(recipient_pk, e_sk)
    nonce = b"meshnode-slot".ljust(23, b"\x00") + b"\x00"
    first = nacl.bindings.crypto_secretbox_easy(bytes((named,)) + bytes(32), nonce, shared)
    rest = random.Random(named).randbytes(SLOT_BYTES * (slots - 1) + 16 + 10)
    return enc_public_key(e_sk) + first + rest


@pytest.mark.parametrize(
    ("named", "slots", "problem"),
    [
        (0, 2, "damaged: slot 1 names 0 slots"),
        (3, 2, "damaged: slot 1 names 3 slots"),
        (8, 7, "damaged: slot 1 names 8 slots"),
        (2, 2, "damaged: a slot opened but the message does not"),
    ],
)
def test_a_slot_that_names_a_wrong_count_is_damage(named: int, slots: int, problem: str) -> None:
    recipient = enc_keypair(identity(2).seed)
    payload = crafted(named, slots, recipient.public_key)
    with pytest.raises(PrivateMessageError, match=problem):
        open_private(payload, recipient.secret_key)

"""codec.js in headless Chromium: the known-answer vectors, and agreement with the Python codec.

Every test runs twice (conftest.py): from the loopback address, a secure context, and from a
LAN-style name, where WebCrypto is absent as on a phone. The page reports what the browser
computed; the expectations and the comparisons live here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.codec.compress import compress_block
from meshnode.codec.message import decode_entry
from meshnode.core.feed import check_content
from tests.fakes import identity
from tests.web.conftest import WINDOW
from tests.web.mutants import (
    entry_mutants,
    lz4_blocks,
    python_decompress,
    python_varint,
    python_verify,
    varint_inputs,
)

if TYPE_CHECKING:
    from tests.web.conftest import VectorsPage

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "entries.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["entries"]
# FIPS 180-4's SHA-256 examples (one block, empty, two blocks), as the page names them.
FIPS_SHA256 = {
    "abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "empty": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "two_blocks": "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
}


def expected_report(case: dict[str, Any]) -> dict[str, Any]:
    """What the page must report for a vector; the Python codec decodes the carried content."""
    full_hex = case["full_hex"]
    expected: dict[str, Any] = {
        "verify": "ok",
        "decode": "ok",
        "author_text": case["author_text"],
        "seq": case["seq"],
        "previous_hex": case["previous_hex"],
        "timestamp_ms": str(case["timestamp_ms"]),
        "content_type": str(case["content_type"]),
        "compressed": case["compressed"],
        "content_hex": decode_entry(bytes.fromhex(full_hex)).content.hex(),
        "plain_hex": case["content_plain_hex"],
        "id_hex": case["id_hex"],
        "short_hex": case["short_hex"],
        "rebuilt_hex": full_hex,
    }
    if not case["compressed"]:  # the browser never compresses (codec.js, header comment)
        expected["made_hex"] = full_hex
    return expected


def mismatches(case: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """Each field where the browser's report differs from the vector, named."""
    return [
        f"{case['name']}.{field}: browser {report.get(field)!r}, expected {want!r}"
        for field, want in expected_report(case).items()
        if report.get(field) != want
    ]


def error_class(outcome: Any) -> Any:
    """An outcome with an error's message cut to its class (the two codecs word them apart)."""
    if isinstance(outcome, str) and outcome.startswith("error "):
        return outcome.split(":", 1)[0]
    return outcome


def test_page_runs_where_it_claims(vectors_page: VectorsPage) -> None:
    context = vectors_page.results["context"]
    on_loopback = vectors_page.kind == "loopback"
    assert context["secure"] is on_loopback, context
    assert context["subtlePresent"] is on_loopback, context  # absent on the LAN-style name
    assert context["viewport"] == list(WINDOW), context  # phone-sized


def test_varint_vectors(vectors_page: VectorsPage) -> None:
    for row in vectors_page.results["varints"]:
        hex_ = VECTORS["varints"][row["value"]]
        assert row["encoded"] == hex_, row
        assert row["decoded"] == [row["value"], len(hex_) // 2], row


def test_sha256_fips_vectors(vectors_page: VectorsPage) -> None:
    assert vectors_page.results["sha256"] == FIPS_SHA256


def test_entry_vectors(vectors_page: VectorsPage) -> None:
    reports = vectors_page.results["entries"]
    assert [r["name"] for r in reports] == [c["name"] for c in CASES]
    assert [m for case, r in zip(CASES, reports, strict=True) for m in mismatches(case, r)] == []


def test_the_pages_signer_makes_the_vectors_bytes_with_webcrypto_where_it_can(
    vectors_page: VectorsPage,
) -> None:
    script = "return window.meshnodeVectors.signEntries(arguments[0])"  # a promise: awaited
    signed = vectors_page.driver.execute_script(script, CASES)
    made = vectors_page.call("createEntries", CASES)  # tweetnacl, synchronously
    kinds = {s["kind"] for s in signed}
    assert kinds == {"webcrypto" if vectors_page.kind == "loopback" else "tweetnacl"}
    assert [s["made"] for s in signed] == made
    for case, s in zip(CASES, signed, strict=True):
        if not case["compressed"]:
            assert s["made"] == case["full_hex"], case["name"]


def test_browser_entries_are_accepted_by_python(vectors_page: VectorsPage) -> None:
    for case, report in zip(CASES, vectors_page.results["entries"], strict=True):
        entry = decode_entry(bytes.fromhex(report["made_hex"]))
        check_content(entry, bytes.fromhex(case["network_key_hex"]), 8192)
        assert not entry.compressed, case["name"]
        assert entry.plain_content().hex() == case["content_plain_hex"], case["name"]
        fields = (entry.seq, entry.previous.hex() if entry.previous else None, entry.timestamp_ms)
        assert fields == (case["seq"], case["previous_hex"], case["timestamp_ms"]), case["name"]
        assert entry.content_type == case["content_type"], case["name"]
        # Python compressed this vector, so the browser's entry is another valid one (other id).
        assert (entry.raw.hex() == case["full_hex"]) is not case["compressed"], case["name"]


def test_a_flipped_byte_is_reported(vectors_page: VectorsPage) -> None:
    flipped = []
    for case in CASES:
        full = bytearray.fromhex(case["full_hex"])
        full[-65] ^= 0x01  # the content's last byte: still well formed, no longer signed
        seed = bytearray.fromhex(case["seed_hex"])
        seed[0] ^= 0x80
        flipped.append({**case, "full_hex": full.hex(), "seed_hex": seed.hex()})
    reports = vectors_page.call("run", {**VECTORS, "entries": flipped})["entries"]
    for case, report in zip(CASES, reports, strict=True):
        found = {m.split(":")[0] for m in mismatches(case, report)}
        assert {f"{case['name']}.verify", f"{case['name']}.id_hex"} <= found
        assert report["verify"].startswith("error VerifyError"), report["verify"]
        if not case["compressed"]:
            assert f"{case['name']}.made_hex" in found


REFUSALS: dict[str, dict[str, Any]] = {
    "post_not_utf8": {"content_type": 1, "content_plain_hex": "ff"},
    "contact_too_short": {"content_type": 2, "content_plain_hex": "01" * 32},
    "contact_unknown_action": {"content_type": 2, "content_plain_hex": "05" + "00" * 32},
    "seq1_with_previous": {"previous_hex": "00" * 32},
    "seq2_without_previous": {"seq": 2},
    "seq_over_2_53": {"seq": 2**53, "previous_hex": "00" * 32},
    "content_over_limit": {"content_type": 0, "content_plain_hex": "00" * 8193},
    "short_network_key": {"network_key_hex": "00" * 31},
}


def test_create_entry_refuses_what_python_would_reject(vectors_page: VectorsPage) -> None:
    base = CASES[0]  # post_seq1
    made = vectors_page.call("createEntries", [{**base, **change} for change in REFUSALS.values()])
    outcomes = dict(zip(REFUSALS, map(error_class, made), strict=True))
    assert outcomes == dict.fromkeys(REFUSALS, "error RangeError")


def test_varint_decoder_agrees_with_python(vectors_page: VectorsPage) -> None:
    inputs = varint_inputs(random.Random(5), 60)
    browser = vectors_page.call("decodeVarints", [b.hex() for b in inputs])
    outcomes = [
        (blob.hex(), error_class(js), python_varint(blob))
        for blob, js in zip(inputs, browser, strict=True)
    ]
    assert [o for o in outcomes if o[1] != o[2]] == []


def test_lz4_decoder_agrees_with_python(vectors_page: VectorsPage) -> None:
    real, strange = lz4_blocks(random.Random(3), 150)
    browser = vectors_page.call("decompressBlocks", [b.hex() for b in real + strange], 8192)
    outcomes = [
        (blob.hex(), error_class(js), python_decompress(blob))
        for blob, js in zip(real + strange, browser, strict=True)
    ]
    # Every real block decodes to Python's bytes.
    assert [o for o in outcomes[: len(real)] if o[1] != o[2]] == []
    # Whatever the browser accepts, Python accepts with the same bytes; the browser may refuse
    # a few endings that break the format but liblz4 tolerates (codec.js, lz4DecodeBlock).
    assert [o for o in outcomes if not o[1].startswith("error") and o[1] != o[2]] == []
    # The strange blocks probe both sides of the rules.
    python_accepts = [not o[2].startswith("error") for o in outcomes[len(real) :]]
    assert python_accepts.count(True) > 50
    assert python_accepts.count(False) > 50


def test_entry_verifier_agrees_with_python(vectors_page: VectorsPage) -> None:
    rng = random.Random(9)
    pairs = []
    for case in CASES:
        raw = bytes.fromhex(case["full_hex"])
        pairs += [(m, case["network_key_hex"]) for m in [raw, *entry_mutants(rng, raw, 12)]]
    browser = vectors_page.call("verifyEntries", [[raw.hex(), key] for raw, key in pairs])
    outcomes = [
        (raw.hex(), error_class(js), python_verify(raw, bytes.fromhex(key)))
        for (raw, key), js in zip(pairs, browser, strict=True)
    ]
    assert [o for o in outcomes if o[1] != o[2]] == []


# Points libsodium refuses: the seven small-order encodings, each also with its sign bit
# set, and non-canonical keys (y at or above p); a real key is there to show both agree.
_SMALL_ORDER = [
    bytes(32),
    bytes((1,)) + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    *(bytes((b,)) + b"\xff" * 30 + b"\x7f" for b in (0xEC, 0xED, 0xEE)),
]
_ODD_POINTS = [
    *_SMALL_ORDER,
    *(p[:31] + bytes((p[31] | 0x80,)) for p in _SMALL_ORDER),
    *(bytes((b,)) + b"\xff" * 31 for b in (0xEF, 0xF0, 0xFF)),
    identity(5).feed_id,
]


def test_degenerate_keys_and_signatures_are_judged_as_python_does(
    vectors_page: VectorsPage,
) -> None:
    key = bytes.fromhex(VECTORS["default_network_key_hex"])
    pairs = []
    for point in _ODD_POINTS:
        # As the author's key, with R the same point and S zero; and as R under a real key.
        pairs.append(bytes((0x10,)) + point + bytes((1, 0, 0)) + point + bytes(32))
        real = identity(6).feed_id
        pairs.append(bytes((0x10,)) + real + bytes((1, 0, 0)) + point + bytes(32))
    honest = bytes.fromhex(CASES[0]["full_hex"])
    pairs.append(honest)
    browser = vectors_page.call("verifyEntries", [[raw.hex(), key.hex()] for raw in pairs])
    outcomes = [
        (raw.hex(), error_class(js), python_verify(raw, key))
        for raw, js in zip(pairs, browser, strict=True)
    ]
    assert [o for o in outcomes if o[1] != o[2]] == []
    assert outcomes[-1][1] == python_verify(honest, key)


def test_codec_never_touches_webcrypto(vectors_page: VectorsPage) -> None:
    case = CASES[2]  # compressed, so lz4 runs too
    vectors_page.call("run", VECTORS)
    vectors_page.call("verifyEntries", [[case["full_hex"], case["network_key_hex"]]])
    vectors_page.call("decompressBlocks", [compress_block(b"market day " * 20).hex()], 8192)
    seen = vectors_page.web_crypto()
    assert seen["subtleReads"] == []
    assert seen["randomCalls"] == []
    # The spy works: a read of crypto.subtle from the page is counted.
    vectors_page.driver.execute_script("return typeof crypto.subtle")
    assert len(vectors_page.web_crypto()["subtleReads"]) == 1


CONTENT = json.loads((Path(__file__).parents[1] / "vectors" / "content.json").read_text())


def test_reply_and_about_vectors(vectors_page: VectorsPage) -> None:
    report = vectors_page.call("contents", CONTENT)
    reply = CONTENT["reply"]
    assert report["reply"] == {
        "encoded": reply["content_hex"],
        "decoded": {"parent": reply["parent_hex"], "text": reply["text"]},
    }
    for name in ("about", "about_name_only"):
        case = CONTENT[name]
        assert report[name]["encoded"] == case["content_hex"]
        assert report[name]["decoded"] == {"name": case["name"], "description": case["description"]}
    assert report["entries"] == [c["full_hex"] for c in CONTENT["entries"]]
    assert report["refused"].startswith("error RangeError: a name is 1 to 64 bytes")

"""The USB drive format (codec/manifest.py, segments in codec/bundle.py): known answers and
properties. A changed vector means a new drive format version."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.bundle import decode_bundle, encode_bundle
from meshnode.codec.compress import compress_stream, decompress_stream
from meshnode.codec.manifest import (
    MANIFEST_VERSION,
    BoxVisit,
    Manifest,
    SegmentInfo,
    canonical_manifest,
    decode_manifest,
    encode_manifest,
    segment_name,
    segment_number,
)
from meshnode.errors import DecodeError
from meshnode.host.jobs import Job, run_inline
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, network_tag
from meshnode.types import FeedId, Seq

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "drive.json").read_text()
)
AUTHOR = Identity(bytes.fromhex(VECTORS["author_seed_hex"])).feed_id
OTHER = Identity(bytes.fromhex(VECTORS["other_seed_hex"])).feed_id


def vector_manifest() -> Manifest:
    segment = VECTORS["segment"]
    return Manifest(
        network=network_tag(DEFAULT_NETWORK_KEY),
        cap_bytes=1 << 30,
        next_segment=2,
        segments=(
            SegmentInfo(
                name=segment["name"],
                size_bytes=len(bytes.fromhex(segment["file_hex"])),
                sha256=segment["sha256"],
                feeds={AUTHOR: (Seq(1), Seq(2))},
            ),
        ),
        boxes={AUTHOR: BoxVisit(seen_ms=1_700_000_000_500, clock={AUTHOR: Seq(2), OTHER: Seq(0)})},
    )


def test_the_vectors_are_of_this_version_and_network() -> None:
    assert MANIFEST_VERSION == 1
    assert bytes.fromhex(VECTORS["network_key_hex"]) == DEFAULT_NETWORK_KEY


def test_segment_vector_decodes_to_its_entries() -> None:
    segment = VECTORS["segment"]
    data = bytes.fromhex(segment["file_hex"])
    assert hashlib.sha256(data).hexdigest() == segment["sha256"]
    entries = [bytes.fromhex(h) for h in segment["entries_hex"]]
    assert list(decode_bundle(data, DEFAULT_NETWORK_KEY)) == entries


def test_segment_vector_encodes_to_its_header_and_body() -> None:
    """The lz4 bytes may differ between lz4 releases; what they hold may not."""
    segment = VECTORS["segment"]
    entries = [bytes.fromhex(h) for h in segment["entries_hex"]]
    data = encode_bundle(DEFAULT_NETWORK_KEY, entries)
    assert data[:13].hex() == segment["header_hex"]
    assert decompress_stream(data[13:]).hex() == segment["body_plain_hex"]


def test_manifest_vector_encodes_and_decodes_exactly() -> None:
    text = VECTORS["manifest"]["text"].encode("ascii")
    assert encode_manifest(vector_manifest()) == text
    assert decode_manifest(text) == vector_manifest()
    assert json.loads(text)["sha256"] == VECTORS["manifest"]["sha256_field"]


def test_a_manifest_of_a_later_version_says_to_update() -> None:
    body = json.loads(VECTORS["manifest"]["text"])
    body["version"] = 2
    with pytest.raises(DecodeError, match="update meshnode"):
        decode_manifest(json.dumps(body).encode())


def test_a_manifest_with_a_wrong_checksum_is_torn() -> None:
    body = json.loads(VECTORS["manifest"]["text"])
    body["cap_bytes"] += 1
    with pytest.raises(DecodeError, match="checksum"):
        decode_manifest(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(cap_bytes=-1), "cap_bytes"),
        (lambda b: b.update(cap_bytes=True), "cap_bytes"),
        (lambda b: b.update(next_segment=0), "next_segment"),
        (lambda b: b.update(network="B3C4A8B5"), "network"),
        (lambda b: b.update(extra=1), "keys"),
        (lambda b: b["segments"][0].update(name="../x.mnb"), "segment name"),
        (lambda b: b["segments"][0].update(sha256="00"), "sha256"),
        (lambda b: b["segments"][0]["feeds"].update({"@x.ed25519": [1, 2]}), "feed id"),
        (lambda b: b["segments"][0].update(feeds={next(iter(b["boxes"])): [3, 2]}), "backwards"),
        (lambda b: b["segments"].append(b["segments"][0]), "twice"),
    ],
)
def test_a_manifest_field_out_of_range_is_named(change: Any, message: str) -> None:
    body = json.loads(VECTORS["manifest"]["text"])
    del body["sha256"]
    change(body)
    body["sha256"] = hashlib.sha256(canonical_manifest(body)).hexdigest()
    with pytest.raises(DecodeError, match=message):
        decode_manifest(json.dumps(body).encode())


def test_segment_names_are_8_3_and_numbered_from_1() -> None:
    assert segment_name(1) == "s000001.mnb"
    assert segment_number("s000001.mnb") == 1
    assert segment_number("s1234567.mnb") == 1234567
    for bad in ("s000000.mnb", "S000001.MNB", "s1.mnb", "s000001.mnb.tmp", "x000001.mnb"):
        assert segment_number(bad) is None


# -- properties -------------------------------------------------------------------------

feeds = st.binary(min_size=32, max_size=32).map(FeedId)
seqs = st.integers(1, 1 << 40).map(Seq)
runs = st.tuples(seqs, seqs).map(lambda r: (min(r), max(r)))
segments = st.builds(
    SegmentInfo,
    name=st.integers(1, 9_999_999).map(segment_name),
    size_bytes=st.integers(0, 1 << 40),
    sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
    feeds=st.dictionaries(feeds, runs, max_size=4),
)
manifests = st.builds(
    Manifest,
    network=st.binary(min_size=4, max_size=4).map(bytes.hex),
    cap_bytes=st.integers(0, 1 << 50),
    next_segment=st.integers(1, 1 << 30),
    segments=st.lists(segments, max_size=4, unique_by=lambda s: s.name).map(tuple),
    boxes=st.dictionaries(
        feeds,
        st.builds(
            BoxVisit,
            seen_ms=st.integers(0, 1 << 45),
            clock=st.dictionaries(feeds, st.integers(0, 1 << 40).map(Seq), max_size=4),
        ),
        max_size=3,
    ),
)


@given(manifest=manifests)
def test_manifest_round_trip(manifest: Manifest) -> None:
    assert decode_manifest(encode_manifest(manifest)) == manifest


@given(data=st.binary(max_size=400))
def test_manifest_garbage_gives_only_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_manifest(data)


@given(manifest=manifests, data=st.data())
def test_a_manifest_cut_or_flipped_is_caught_or_unchanged(
    manifest: Manifest, data: st.DataObject
) -> None:
    raw = bytearray(encode_manifest(manifest))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(DecodeError):
        assert decode_manifest(bytes(raw)) == manifest  # a flip in white space


def test_deep_json_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        decode_manifest(b"[" * 100_000)


@settings(max_examples=20)
@given(size=st.integers(0, 5000), limit=st.integers(0, 5000))
def test_lz4_output_is_capped(size: int, limit: int) -> None:
    packed = compress_stream(bytes(size))
    if size <= limit:
        assert decompress_stream(packed, limit) == bytes(size)
    else:
        with pytest.raises(DecodeError, match="longer than"):
            decompress_stream(packed, limit)


def test_a_segment_that_expands_past_its_limit_is_refused() -> None:
    bomb = encode_bundle(DEFAULT_NETWORK_KEY, [bytes(1 << 20)] * 4)  # 4 MiB of zeros
    assert len(bomb) < 64 << 10
    with pytest.raises(DecodeError):
        list(decode_bundle(bomb, DEFAULT_NETWORK_KEY, 1 << 20))


# -- jobs -------------------------------------------------------------------------------


def test_a_job_hands_back_its_value_or_its_error() -> None:
    job = Job(lambda: 7)
    with pytest.raises(RuntimeError, match="has not run"):
        job.result()
    job.run()
    assert job.result() == 7
    failing: Job[int] = Job(lambda: 1 // 0)
    failing.run()  # never raises here: the stream that asked for it decides
    with pytest.raises(ZeroDivisionError):
        failing.result()


def test_run_inline_runs_jobs_and_passes_the_rest() -> None:
    ran: list[int] = []
    job = Job(lambda: ran.append(1))
    assert list(run_inline([{"a": 1}, job, {"b": 2}])) == [{"a": 1}, {"b": 2}]
    assert ran == [1]


def test_a_job_started_early_runs_in_its_own_thread_and_run_waits_for_it() -> None:
    import threading

    release = threading.Event()
    where: list[int] = []

    def work() -> int:
        where.append(threading.get_ident())
        assert release.wait(20)
        return 5

    job = Job(work)
    job.start()
    release.set()
    job.run()  # waits for the thread
    assert job.result() == 5
    assert where != [threading.get_ident()]

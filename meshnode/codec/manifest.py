"""Drive manifest: what the ``meshnode/`` folder of a USB drive holds (written last).

``manifest.json`` is one JSON object, UTF-8, written by ``encode_manifest`` with sorted keys
and an indent of 1 (ASCII only)::

    {"format": "meshnode-drive",
     "version": 1,
     "network": "<8 hex digits: identity.network_tag of the network key>",
     "cap_bytes": N,        most bytes of segment files the drive takes
     "next_segment": N,     number of the next segment file; numbers are never reused
     "segments": [{"name": "s000001.mnb", "bytes": N, "sha256": "<64 hex digits>",
                   "feeds": {"<feed id>": [first, latest]}}, ...],
     "boxes": {"<feed id>": {"seen_ms": N, "clock": {"<feed id>": latest}}},
     "sha256": "<64 hex digits>"}

* ``segments`` are bundle files (codec/bundle.py) in ``segments/``, listed in the order
  they were written, which is the order they are read in. ``feeds`` gives the run of seqs
  of each feed a segment carries. The runs of one feed continue each other from segment to
  segment (each starts right after the one before ends), so a box reading in order never
  meets a gap. Entries of a feed a segment does not list are dead (left when a damaged
  segment broke the run) and are skipped unread.
* ``boxes``: each box that synced the drive, by its feed id: its last visit (its own claimed
  wall clock, ms) and its clock, the latest seq it held of every feed it wants. The next
  box carries back what these say is missing.
* ``sha256`` is the sha256 of the other keys in canonical form (``canonical_manifest``:
  compact JSON, sorted keys, ASCII). A manifest cut short or changed fails it.

Numbers are integers in 0..2**63-1; seqs and segment numbers are at least 1; a name is
``s`` and 6 or 7 digits, then ``.mnb`` (8.3-safe); feed ids are in their one text form.
Any layout change bumps ``MANIFEST_VERSION`` and the vectors in tests/vectors/drive.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError
from meshnode.secure.identity import format_feed_id, parse_feed_id
from meshnode.types import FeedId, Seq

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "MAX_MANIFEST_BYTES",
    "BoxVisit",
    "Manifest",
    "SegmentInfo",
    "canonical_manifest",
    "decode_manifest",
    "encode_manifest",
    "segment_name",
    "segment_number",
]

MANIFEST_FORMAT = "meshnode-drive"
MANIFEST_VERSION = 1
# Decoding JSON takes about 9x its size in memory: 8 MiB keeps a Pi Zero well clear of
# its RAM, and holds ~100,000 feed runs. Writers keep under it (usb/drive.py save_drive).
MAX_MANIFEST_BYTES = 8 << 20
_MAX_INT = (1 << 63) - 1
_SEGMENT_NAME = re.compile(r"s(\d{6,7})\.mnb")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"[0-9a-f]{8}")
_KEYS = {"format", "version", "network", "cap_bytes", "next_segment", "segments", "boxes"}

Run = tuple[Seq, Seq]


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """One segment file as listed: its size, checksum and the run of each feed in it."""

    name: str
    size_bytes: int
    sha256: str
    feeds: Mapping[FeedId, Run]

    def entries(self) -> int:
        """Entries listed (dead ones not counted)."""
        return sum(latest - first + 1 for first, latest in self.feeds.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxVisit:
    """A box's last sync of the drive: when, and the latest seq of every feed it wants."""

    seen_ms: int
    clock: Mapping[FeedId, Seq]


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The drive's table of contents."""

    network: str
    cap_bytes: int
    next_segment: int = 1
    segments: tuple[SegmentInfo, ...] = ()
    boxes: Mapping[FeedId, BoxVisit] = field(default_factory=dict)


def segment_name(number: int) -> str:
    """File name of segment ``number``: ``s000001.mnb``."""
    return f"s{number:06d}.mnb"


def segment_number(name: str) -> int | None:
    """Number of a segment file name, None when ``name`` is not one."""
    match = _SEGMENT_NAME.fullmatch(name)
    return int(match[1]) if match and int(match[1]) >= 1 else None


def _body(manifest: Manifest) -> dict[str, object]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "network": manifest.network,
        "cap_bytes": manifest.cap_bytes,
        "next_segment": manifest.next_segment,
        "segments": [
            {
                "name": s.name,
                "bytes": s.size_bytes,
                "sha256": s.sha256,
                "feeds": {format_feed_id(f): [a, b] for f, (a, b) in s.feeds.items()},
            }
            for s in manifest.segments
        ],
        "boxes": {
            format_feed_id(box): {
                "seen_ms": visit.seen_ms,
                "clock": {format_feed_id(f): seq for f, seq in visit.clock.items()},
            }
            for box, visit in manifest.boxes.items()
        },
    }


def canonical_manifest(body: Mapping[str, object]) -> bytes:
    """The bytes ``sha256`` covers: compact JSON with sorted keys, ASCII."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def encode_manifest(manifest: Manifest) -> bytes:
    """The ``manifest.json`` bytes of ``manifest``, checksum included.

    Raises:
        ValueError: a field is out of its range (a bug in the caller).
    """
    body = _body(manifest)
    _decode_fields(body)  # never write what no box could read back
    body["sha256"] = hashlib.sha256(canonical_manifest(body)).hexdigest()
    return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode("ascii")


def decode_manifest(data: bytes) -> Manifest:
    """Parse and check ``manifest.json`` bytes.

    Raises:
        DecodeError: not JSON, not a manifest of this version, a field out of range, or a
            checksum that does not match (a manifest cut short or changed).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise DecodeError(f"manifest is over {MAX_MANIFEST_BYTES} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"manifest is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise DecodeError("manifest is not a JSON object")
    claimed = body.pop("sha256", None)
    if body.get("format") != MANIFEST_FORMAT:
        raise DecodeError("not a meshnode drive manifest")
    if body.get("version") != MANIFEST_VERSION:
        raise DecodeError(
            f"drive format version {body.get('version')!r} is not supported "
            f"(this meshnode reads {MANIFEST_VERSION}): update meshnode"
        )
    if claimed != hashlib.sha256(canonical_manifest(body)).hexdigest():
        raise DecodeError("manifest checksum does not match (cut short or changed)")
    return _decode_fields(body)


def _decode_fields(body: Mapping[str, object]) -> Manifest:
    """The Manifest a checked JSON body holds; DecodeError naming the bad field."""
    if set(body) != _KEYS:
        raise DecodeError(f"manifest keys are {sorted(body)}, expected {sorted(_KEYS)}")
    network = body["network"]
    if not isinstance(network, str) or not _TAG.fullmatch(network):
        raise DecodeError("manifest network is not an 8-hex-digit tag")
    segments = _list(body["segments"], "segments")
    manifest = Manifest(
        network=network,
        cap_bytes=_int(body["cap_bytes"], "cap_bytes"),
        next_segment=_int(body["next_segment"], "next_segment", lo=1),
        segments=tuple(_segment(s, n) for n, s in enumerate(segments)),
        boxes={
            _feed(box): _visit(visit, f"boxes.{box}")
            for box, visit in _dict(body["boxes"], "boxes").items()
        },
    )
    names = [s.name for s in manifest.segments]
    if len(set(names)) != len(names):
        raise DecodeError("manifest lists a segment twice")
    return manifest


def _segment(value: object, n: int) -> SegmentInfo:
    where = f"segments[{n}]"
    d = _dict(value, where)
    if set(d) != {"name", "bytes", "sha256", "feeds"}:
        raise DecodeError(f"{where} keys are {sorted(d)}")
    name, sha = d["name"], d["sha256"]
    if not isinstance(name, str) or segment_number(name) is None:
        raise DecodeError(f"{where}.name is not a segment name")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise DecodeError(f"{where}.sha256 is not 64 hex digits")
    feeds = {}
    for feed, run in _dict(d["feeds"], f"{where}.feeds").items():
        pair = _list(run, f"{where}.feeds")
        if len(pair) != 2:
            raise DecodeError(f"{where}.feeds: a run is [first, latest]")
        first, latest = (_int(x, f"{where}.feeds", lo=1) for x in pair)
        if first > latest:
            raise DecodeError(f"{where}.feeds: run {first}..{latest} is backwards")
        feeds[_feed(feed)] = (Seq(first), Seq(latest))
    return SegmentInfo(
        name=name, size_bytes=_int(d["bytes"], f"{where}.bytes"), sha256=sha, feeds=feeds
    )


def _visit(value: object, where: str) -> BoxVisit:
    d = _dict(value, where)
    if set(d) != {"seen_ms", "clock"}:
        raise DecodeError(f"{where} keys are {sorted(d)}")
    clock = {
        _feed(f): Seq(_int(seq, f"{where}.clock"))
        for f, seq in _dict(d["clock"], f"{where}.clock").items()
    }
    return BoxVisit(seen_ms=_int(d["seen_ms"], f"{where}.seen_ms"), clock=clock)


def _feed(text: str) -> FeedId:
    feed = parse_feed_id(text)
    if format_feed_id(feed) != text:
        raise DecodeError(f"feed id {text!r} is not in its text form")
    return feed


def _int(value: object, where: str, lo: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= _MAX_INT:
        raise DecodeError(f"manifest {where} is not an integer >= {lo}")
    return value


def _dict(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise DecodeError(f"manifest {where} is not an object")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise DecodeError(f"manifest {where} is not a list")
    return value

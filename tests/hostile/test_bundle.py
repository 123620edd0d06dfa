"""A stranger's bundle file for ``meshnode import``: bombs, crafted records, odd files.

The rules under test (codec/bundle.py, cli/bundle.py): a bundle is read a chunk at a time
and decoded strictly (no record shorter than an entry, no more records than its size can
pack), so memory stays flat and work stays linear in the file, whatever it claims.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.codec.bundle import (
    BUNDLE_MAGIC,
    BUNDLE_VERSION,
    MIN_ENTRY_BYTES,
    decode_bundle,
    encode_bundle,
    max_records,
    read_bundle,
)
from meshnode.codec.compress import compress_stream
from meshnode.codec.varint import encode_varint
from meshnode.errors import DecodeError
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, network_tag
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from pathlib import Path

CHAIN = [e.raw for e in make_chain(identity(5), 12)]
ALICE_ID = format_feed_id(identity(5).feed_id)


def bundle_of_body(body: bytes) -> bytes:
    """A bundle whose body is ``body`` as it is: what a crafted file holds."""
    tag = bytes.fromhex(network_tag(DEFAULT_NETWORK_KEY))
    return BUNDLE_MAGIC + bytes((BUNDLE_VERSION,)) + tag + compress_stream(body)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, len(CHAIN)), cuts=st.lists(st.integers(0, 1 << 16), max_size=12))
def test_reading_a_bundle_in_pieces_ignores_how_it_is_cut(n: int, cuts: list[int]) -> None:
    data = encode_bundle(DEFAULT_NETWORK_KEY, CHAIN[:n])
    pieces = split_at(data, cuts)
    assert list(read_bundle(pieces, DEFAULT_NETWORK_KEY, packed_bytes=len(data))) == CHAIN[:n]
    assert list(decode_bundle(data, DEFAULT_NETWORK_KEY, strict=True)) == CHAIN[:n]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=600), cuts=st.lists(st.integers(0, 1 << 12), max_size=6))
def test_any_body_read_in_pieces_gives_entries_or_a_decode_error(
    body: bytes, cuts: list[int]
) -> None:
    data = bundle_of_body(body)
    with contextlib.suppress(DecodeError):
        got = list(read_bundle(split_at(data, cuts), DEFAULT_NETWORK_KEY, packed_bytes=len(data)))
        assert all(len(raw) >= MIN_ENTRY_BYTES for raw in got)
        assert len(got) <= max_records(len(data))
    with contextlib.suppress(DecodeError):
        list(read_bundle(split_at(body, cuts), DEFAULT_NETWORK_KEY, packed_bytes=len(body)))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (bytes(1 << 20), "shorter than any entry"),  # zero-length records
        ((encode_varint(150) + bytes(150)) * 20_000, "more than the"),  # packs 400:1
    ],
)
def test_strict_decoding_refuses_what_no_bundle_of_entries_holds(body: bytes, why: str) -> None:
    data = bundle_of_body(body)
    with pytest.raises(DecodeError, match=why):
        list(decode_bundle(data, DEFAULT_NETWORK_KEY, strict=True))
    with pytest.raises(DecodeError, match=why):
        list(read_bundle([data], DEFAULT_NETWORK_KEY, packed_bytes=len(data)))


def test_a_bundle_that_grows_while_it_is_read_is_refused() -> None:
    data = encode_bundle(DEFAULT_NETWORK_KEY, CHAIN)
    with pytest.raises(DecodeError, match="grew past"):  # its record budget was its old size
        list(read_bundle([data], DEFAULT_NETWORK_KEY, packed_bytes=len(data) - 1))


# -- meshnode import, as a user runs it, memory measured -------------------------------------

_IMPORT = """\
import resource, sys
from meshnode.cli.main import main
data, bundle = sys.argv[1], sys.argv[2]
assert main(["--data", data, "init"]) == 0
assert main(["--data", data, "follow", sys.argv[3]]) == 0
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(["--data", data, "import", bundle, "--json"])
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
print(f"RESULT {code} {grown}", file=sys.stderr)
"""


def run_import(tmp_path: Path, data: bytes) -> tuple[int, int, str, str]:
    """``meshnode import`` of ``data`` in a fresh process: exit code, MiB of RSS it grew by,
    stdout, stderr."""
    bundle = tmp_path / "in.bundle"
    bundle.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHNODE")}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT, str(tmp_path / "node"), str(bundle), ALICE_ID],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "HOME": str(tmp_path)},
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("RESULT "))
    _, code, grown = line.split()
    return int(code), int(grown), done.stdout, done.stderr


def test_a_decompression_bomb_is_refused_at_the_first_record_in_flat_memory(
    tmp_path: Path,
) -> None:
    """A 1.2 MB bundle took 632 MiB before: its body was decompressed whole, uncapped."""
    code, grown, _, err = run_import(tmp_path, bundle_of_body(bytes(256 << 20)))
    assert code == 1
    assert "shorter than any entry" in err
    assert "Traceback" not in err
    assert grown < 24, err


def test_a_bomb_of_entry_sized_records_costs_flat_memory_and_stores_nothing(
    tmp_path: Path,
) -> None:
    """Records of 1 MiB of zeros: each is read, found to be no wanted entry, and let go."""
    record = encode_varint(1 << 20) + bytes(1 << 20)
    code, grown, out, err = run_import(tmp_path, bundle_of_body(record * 128))
    assert code == 0, err
    assert '"added": 0' in out
    assert grown < 64, err  # strangers' entries kept for a retry are capped at 32 MiB


def test_a_crafted_bundle_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    body = b"".join(encode_varint(len(r)) + r for r in CHAIN)
    body += (encode_varint(150) + bytes(150)) * 20_000  # then what no bundle of entries holds
    code, _, _, err = run_import(tmp_path, bundle_of_body(body))
    assert code == 1
    assert "more than the" in err
    status = subprocess.run(
        [sys.executable, "-m", "meshnode", "--data", str(tmp_path / "node"), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert '"entries": 1' in status.stdout  # its own follow, nothing of alice


def test_importing_a_fifo_says_so_and_does_not_hang(tmp_path: Path) -> None:
    from meshnode.cli.main import main

    fifo = tmp_path / "pipe.bundle"
    os.mkfifo(fifo)
    data = str(tmp_path / "node")
    assert main(["--data", data, "init"]) == 0
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(main(["--data", data, "import", str(fifo)])), daemon=True
    )
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "import of a FIFO hung"
    assert codes == [1]

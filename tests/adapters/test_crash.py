"""Whole-program durability: SIGKILL in the middle of an import, and a flipped byte on disk."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from meshnode.cli.main import main
from meshnode.codec.bundle import encode_bundle
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from meshnode.store.flatfile import FileStore, StoreConfig
from meshnode.types import FeedId, Seq
from tests.fakes import identity, make_chain

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

FEEDS = 20
PER_FEED = 600


def _cli(data: Path, *args: str) -> int:
    return main(["--data", str(data), *args])


def _follow_all(data: Path) -> None:
    assert _cli(data, "init") == 0
    for n in range(FEEDS):
        assert _cli(data, "follow", format_feed_id(identity(100 + n).feed_id)) == 0


def test_sigkill_during_import_keeps_every_acknowledged_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chains = [make_chain(identity(100 + n), PER_FEED) for n in range(FEEDS)]
    order = [chains[f][i] for i in range(PER_FEED) for f in range(FEEDS)]
    bundle = tmp_path / "big.bundle"
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, [e.raw for e in order]))
    data = tmp_path / "node"
    _follow_all(data)
    capsys.readouterr()

    child = subprocess.Popen(
        [sys.executable, "-m", "meshnode", "--data", str(data), "import", str(bundle)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged = 0
    assert child.stderr is not None
    for line in child.stderr:
        match = re.search(r"imported (\d+)/", line)
        if match:
            acknowledged = int(match.group(1))
        if acknowledged >= 3000:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.stderr.close()
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "import finished before it could be killed"

    with FileStore(data / "store", StoreConfig()) as store:
        for entry in order[:acknowledged]:
            assert store.get(FeedId(entry.author), Seq(entry.seq)) == entry.raw
    assert _cli(data, "check", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"]
    assert report["entries"] >= acknowledged + FEEDS


def test_flipped_byte_is_named_by_check_and_the_rest_stays_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"
    assert _cli(data, "init") == 0
    for i in range(1, 11):
        assert _cli(data, "post", f"village news number {i:02d}") == 0
    capsys.readouterr()
    segment = sorted((data / "store" / "log").glob("*.seg"))[0]
    blob = bytearray(segment.read_bytes())
    at = blob.find(b"village news number 05")
    assert at > 0
    blob[at + 3] ^= 0x20
    segment.write_bytes(bytes(blob))

    assert _cli(data, "check", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert [(p["seq"]) for p in report["problems"]] == [5]
    assert _cli(data, "feed", "--since", "5", "--json") == 0
    seqs = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert seqs == list(range(6, 11))

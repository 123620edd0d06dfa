"""CLI commands that carry entries in files: export and import of lz4 bundles."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.cli_context import Progress, emit_json, feed_id_arg, format_bytes, open_node
from meshnode.codec.bundle import decode_bundle, encode_bundle
from meshnode.codec.message import ContentType
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.identity import format_feed_id
from meshnode.node import Outcome
from meshnode.types import Seq

if TYPE_CHECKING:
    import argparse

    from meshnode.cli_context import Context
    from meshnode.node import IngestResult, Node
    from meshnode.types import FeedId

__all__ = ["ImportTally", "add_bundle_commands"]

# Flush and report every this many entries: each "imported N/M" line printed means the
# first N entries are on disk, which is what a crash test may rely on.
IMPORT_BATCH = 1000


# Why entries are "not wanted", for a user who imported a stranger's bundle.
_UNWANTED_HINT = (
    "  not wanted: feeds further than [policy] max_hops from yours, or blocked; "
    "follow a feed to keep it"
)


class ExportError(MeshnodeError):
    """The export could not be made as asked."""


class BundleError(MeshnodeError):
    """A bundle file could not be read: damaged, not a bundle, or of another network."""


def add_bundle_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register export and import."""
    p = sub.add_parser("export", help="write held entries to an lz4 bundle file")
    p.add_argument("file", metavar="FILE", help="bundle to write (replaced atomically)")
    p.add_argument(
        "--feed",
        metavar="ID",
        action="append",
        type=feed_id_arg,
        default=[],
        help="export only this feed (repeatable); default: every feed held",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="verify and store the entries of a bundle file")
    p.add_argument("file", metavar="FILE", help="bundle to read")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_import)


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    """Write a bundle of every held entry (or of the feeds asked for)."""
    path = Path(args.file)
    with open_node(ctx) as node:
        feeds = list(dict.fromkeys(args.feed)) or _export_order(node)
        raws: list[bytes] = []
        for feed in feeds:
            raws.extend(_feed_raws(node, feed))
        data = encode_bundle(node.network_key, raws)
    _write_atomically(path, data)
    summary = {"file": str(path), "feeds": len(feeds), "entries": len(raws), "bytes": len(data)}
    if args.json:
        emit_json(summary)
    else:
        size = format_bytes(len(data))
        print(f"exported {len(raws)} entries of {len(feeds)} feeds to {path} ({size})")
    return 0


def _export_order(node: Node) -> list[FeedId]:
    """Our feed first, then by hop distance, so an importer meets contact entries early."""
    far = 1 << 30
    return sorted(node.store.feeds(), key=lambda f: (_hops_or(node, f, far), f))


def _hops_or(node: Node, feed: FeedId, default: int) -> int:
    hops = node.hops(feed)
    return default if hops is None else hops


def _feed_raws(node: Node, feed: FeedId) -> list[bytes]:
    head = node.store.head(feed)
    if head is None:
        raise ExportError(f"feed {format_feed_id(feed)} is not held here")
    return [node.store.get(feed, Seq(seq)) for seq in range(head.first, head.latest + 1)]


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temp file, fsync, rename, fsync the directory: never a half bundle."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(slots=True)
class ImportTally:
    """Counts of what an import did, with rejection reasons grouped."""

    added: int = 0
    held: int = 0
    unwanted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def count(self, result: IngestResult) -> None:
        """Add one ingest result."""
        if result.outcome is Outcome.ADDED:
            self.added += 1
        elif result.outcome is Outcome.HELD:
            self.held += 1
        elif result.outcome is Outcome.UNWANTED:
            self.unwanted += 1
        else:
            self.rejected += 1
            # Group "gap: holds up to seq 4, got seq 9" with its kin.
            self.reasons[re.sub(r"\d+", "N", result.reason or result.outcome.value)] += 1

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "added": self.added,
            "held": self.held,
            "unwanted": self.unwanted,
            "rejected": self.rejected,
            "reasons": dict(self.reasons.most_common()),
        }


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """Verify and ingest every entry of a bundle; report what happened to them."""
    data = Path(args.file).read_bytes()
    with open_node(ctx) as node:
        # Decode everything first: a damaged bundle is refused before anything is stored.
        try:
            raws = list(decode_bundle(data, node.network_key))
        except DecodeError as exc:
            raise BundleError(f"{args.file}: {exc}") from exc
        tally = import_entries(node, raws, Progress("imported", len(raws), enabled=not ctx.quiet))
    if args.json:
        emit_json(tally.to_json())
    else:
        print(
            f"added {tally.added}, already held {tally.held}, "
            f"not wanted {tally.unwanted}, rejected {tally.rejected}"
        )
        if tally.unwanted:
            print(_UNWANTED_HINT)
        for reason, n in tally.reasons.most_common():
            print(f"  rejected {n}: {reason}")
    return 0


def import_entries(node: Node, raws: list[bytes], progress: Progress) -> ImportTally:
    """Ingest ``raws`` in order, flushing and reporting every IMPORT_BATCH entries."""
    tally = ImportTally()
    unwanted: list[bytes] = []
    graph_changed = False
    for done, raw in enumerate(raws, 1):
        graph_changed |= _ingest(node, raw, tally, unwanted)
        if done % IMPORT_BATCH == 0:
            node.flush()
            progress.update(done)
    # A follow later in the bundle can make earlier entries wanted: retry those.
    while unwanted and graph_changed:
        retry, unwanted, graph_changed = unwanted, [], False
        for raw in retry:
            graph_changed |= _ingest(node, raw, tally, unwanted)
    tally.unwanted += len(unwanted)
    node.flush()
    if len(raws) % IMPORT_BATCH or not raws:
        progress.update(len(raws))
    progress.finish()
    return tally


def _ingest(node: Node, raw: bytes, tally: ImportTally, unwanted: list[bytes]) -> bool:
    """Ingest one entry; True when it was a contact entry that may change the follow graph."""
    result = node.ingest(raw)
    if result.outcome is Outcome.UNWANTED:
        unwanted.append(raw)
        return False
    tally.count(result)
    entry = result.entry
    return (
        result.outcome is Outcome.ADDED
        and entry is not None
        and entry.content_type == ContentType.CONTACT
    )

"""CLI commands that carry entries in files: export and import of lz4 bundles."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.cli.context import Progress, emit_json, feed_id_arg, format_bytes, open_node
from meshnode.codec.bundle import encode_bundle, read_bundle
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.host.importer import ImportTally, ingest_all
from meshnode.secure.identity import format_feed_id
from meshnode.store.files import write_atomically
from meshnode.types import Seq

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator

    from meshnode.cli.context import Context
    from meshnode.core.node import Node
    from meshnode.types import FeedId

__all__ = ["add_bundle_commands"]


_CHUNK_BYTES = 64 << 10  # a bundle is read this much at a time: memory stays flat
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
    """Write the whole bundle or nothing (store.files.write_atomically)."""
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """Verify and ingest every entry of a bundle; report what happened to them."""
    fd, size = _open_bundle(args.file)
    try:
        with open_node(ctx) as node:
            # Check everything first: a damaged bundle is refused before anything is stored.
            # The file is read twice, a chunk at a time, so memory stays flat whatever its size.
            try:
                total = sum(1 for _ in _entries(fd, size, node.network_key))
                progress = Progress("imported", total, enabled=not ctx.quiet)
                tally = import_entries(node, _entries(fd, size, node.network_key), progress)
            except DecodeError as exc:
                raise BundleError(f"{args.file}: {exc}") from exc
    finally:
        os.close(fd)
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


def _open_bundle(name: str) -> tuple[int, int]:
    """An fd of the regular file ``name`` and its size (never a FIFO or device: it would
    hang or never end)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"{name}: {exc.strerror or exc}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BundleError(f"{name}: not a regular file")
    return fd, st.st_size


def _entries(fd: int, size: int, network_key: bytes) -> Iterator[bytes]:
    """The bundle's entries, strictly decoded from the file a chunk at a time."""

    def chunks() -> Iterator[bytes]:
        offset = 0
        while chunk := os.pread(fd, _CHUNK_BYTES, offset):
            offset += len(chunk)
            yield chunk

    return read_bundle(chunks(), network_key, packed_bytes=size)


def import_entries(node: Node, raws: Iterable[bytes], progress: Progress) -> ImportTally:
    """Ingest ``raws`` in order, flushing and reporting every importer.BATCH entries."""
    tally = ImportTally()
    for done in ingest_all(node, raws, tally):
        progress.update(done)
    progress.finish()
    return tally

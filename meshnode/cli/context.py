"""What every CLI command shares: resolved paths and config, opening the node, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from meshnode.cli.terminal import json_text
from meshnode.core.node import Node
from meshnode.daemon.control import LocalAccess, control_socket_path, find_daemon
from meshnode.daemon.private_ops import private_requests
from meshnode.errors import DecodeError, StoreLocked
from meshnode.host.config import node_config, store_config
from meshnode.host.datadir import (
    DataDirDenied,
    load_identity,
    load_network_key,
    read_config,
    resolve_data_dir,
    store_path,
)
from meshnode.host.eventlog import log_events
from meshnode.host.mailbox_file import IndexSaver, load_mailbox_index
from meshnode.host.verify import make_verifier
from meshnode.secure.identity import parse_feed_id
from meshnode.store.flatfile import FileStore

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from meshnode.daemon.control import Access
    from meshnode.host.config import Config
    from meshnode.host.datadir import ConfigLocation
    from meshnode.secure.identity import Identity
    from meshnode.types import FeedId

__all__ = [
    "Context",
    "Progress",
    "build_context",
    "emit_json",
    "feed_id_arg",
    "format_bytes",
    "now_ms",
    "open_access",
    "open_node",
    "open_store",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Paths and config resolved once per invocation."""

    data_dir: Path
    config: Config
    config_location: ConfigLocation
    quiet: bool = False

    def describe_config(self) -> str:
        """The config path, saying when it is missing and defaults are in force."""
        path = self.config_location.path
        return str(path) if self.config.source != "defaults" else f"{path} (not found; defaults)"

    def control_path(self) -> Path:
        """Where the daemon for this data dir and config listens."""
        return control_socket_path(self.data_dir, os.environ, self.config.node.control_socket)


def build_context(
    data: str | None, location: ConfigLocation, env: Mapping[str, str], *, quiet: bool = False
) -> Context:
    """Load the config, then resolve the data dir; ConfigError on a bad config."""
    loaded = read_config(location)
    data_dir = resolve_data_dir(data, env, loaded)
    return Context(data_dir=data_dir, config=loaded, config_location=location, quiet=quiet)


def open_store(ctx: Context) -> FileStore:
    """The data dir's FileStore (a context manager); StoreLocked if another process has it."""
    return FileStore(store_path(ctx.data_dir), store_config(ctx.config))


@contextmanager
def open_node(ctx: Context, identity: Identity | None = None) -> Iterator[Node]:
    """Open the store and the node over it; close both on the way out, even on error."""
    if identity is None:
        identity = load_identity(ctx.data_dir)
    network_key = load_network_key(ctx.data_dir)
    store = open_store(ctx)
    try:
        node = Node(
            identity,
            network_key=network_key,
            store=store,
            config=node_config(ctx.config),
            rng=random.Random(),
            verifier=make_verifier(ctx.config.node.verify_threads),
            clock_ms=now_ms,
        )
    except BaseException:
        store.close()
        raise
    saver = IndexSaver(node, ctx.data_dir)
    try:
        load_mailbox_index(node, ctx.data_dir)
        node.add_entry_listener(saver.entry_stored)
        yield node
    finally:
        log_events(node.events())
        saver.save()
        node.close()


@contextmanager
def open_access(ctx: Context) -> Iterator[Access]:
    """The running daemon when one answers on the control socket, else the node itself."""
    path = ctx.control_path()
    client = find_daemon(path)
    if client is not None:
        yield client
        return
    with contextlib.ExitStack() as stack:
        try:
            node = stack.enter_context(open_node(ctx))
        except StoreLocked as exc:
            raise StoreLocked(f"{exc} (and no daemon answers on {path})") from exc
        except DataDirDenied as exc:
            if not exc.in_group:
                raise
            # A group member reaches the node through the daemon, which is not answering.
            message = f"{exc}, and no daemon answers on {path}: start it or use sudo"
            raise DataDirDenied(message, in_group=True) from exc
        yield LocalAccess(node, private_requests(ctx.data_dir))


def now_ms() -> int:
    """Wall-clock time for an entry's claimed timestamp (the shell owns the clock)."""
    return time.time_ns() // 1_000_000


def emit_json(value: object) -> None:
    """One JSON document on one line of stdout (control and bidi characters escaped)."""
    print(json_text(value))


def feed_id_arg(text: str) -> FeedId:
    """argparse type for a feed id, so a malformed one is a usage error (exit 2)."""
    try:
        return parse_feed_id(text)
    except DecodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_bytes(n: int) -> str:
    """Human size: 1536 -> "1.5 KiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    size, i = float(n), 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{n} B" if i == 0 else f"{size:.1f} {units[i]}"


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, else one line per update."""

    def __init__(self, verb: str, total: int, *, enabled: bool, tty_only: bool = False) -> None:
        self._stream: TextIO = sys.stderr
        self._tty = self._stream.isatty()
        self._verb = verb
        self._total = total
        self._enabled = enabled and (self._tty or not tty_only)
        self._drawn = False

    def update(self, done: int) -> None:
        """Report ``done`` of the total."""
        if not self._enabled:
            return
        if self._tty:
            width = 30
            filled = width * done // self._total if self._total else width
            bar = "#" * filled + "-" * (width - filled)
            self._stream.write(f"\r{self._verb} {done}/{self._total} [{bar}]")
            self._drawn = True
        else:
            self._stream.write(f"{self._verb} {done}/{self._total}\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()

"""The mailbox index in the data dir (``mailbox.json``): which private entries are kept
past the caps, and since when (core/mailbox.py). Read when the node opens; written when
it closes and, while it runs, at most every SAVE_EVERY_S after a private entry is stored
(a power cut then loses at most that much: those entries fall back to the caps)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from meshnode.codec.message import ContentType
from meshnode.core.mailbox import MAX_INDEX_BYTES
from meshnode.errors import DecodeError
from meshnode.store.files import write_atomically

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from meshnode.codec.message import Entry
    from meshnode.core.node import Node

__all__ = [
    "MAILBOX_INDEX_NAME",
    "SAVE_EVERY_S",
    "IndexSaver",
    "load_mailbox_index",
    "save_mailbox_index",
]

log = logging.getLogger(__name__)

MAILBOX_INDEX_NAME = "mailbox.json"
SAVE_EVERY_S = 60.0  # an index of a full 64 MiB mailbox is a few MB: not on every entry


def load_mailbox_index(node: Node, data_dir: Path) -> None:
    """Give the node its stored mailbox index; a missing or damaged one is logged and left."""
    path = data_dir / MAILBOX_INDEX_NAME
    try:
        with path.open("rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)
        node.mailbox.load_index(data)
        node.mailbox.reconcile(node.store.ranges())
    except FileNotFoundError:
        return
    except (OSError, DecodeError) as exc:
        log.warning("mailbox index %s not used (%s): kept entries follow the caps", path, exc)


def save_mailbox_index(node: Node, data_dir: Path) -> None:
    """Write the node's mailbox index (0600, atomically); a failure is logged."""
    path = data_dir / MAILBOX_INDEX_NAME
    try:
        write_atomically(path, node.mailbox.encode_index(), mode=0o600)
    except OSError as exc:
        log.warning("cannot write mailbox index %s: %s", path, exc.strerror or exc)


class IndexSaver:
    """Saves the index after private entries are stored, at most every ``every_s``."""

    def __init__(
        self,
        node: Node,
        data_dir: Path,
        *,
        every_s: float = SAVE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.data_dir = data_dir
        self.every_s = every_s
        self.clock = clock
        self.saved_at = clock()
        self.pending = False

    def entry_stored(self, entry: Entry) -> None:
        """An entry listener (Node.add_entry_listener)."""
        if entry.content_type == ContentType.PRIVATE:
            self.pending = True
        if self.pending and self.clock() - self.saved_at >= self.every_s:
            self.save()

    def save(self) -> None:
        """Save now."""
        save_mailbox_index(self.node, self.data_dir)
        self.saved_at, self.pending = self.clock(), False

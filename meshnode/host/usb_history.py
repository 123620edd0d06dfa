"""The last drives synced, kept in the data dir for ``meshnode status`` and the operator.

``DIR/usb-syncs.json`` is a JSON list of the last USB_SYNCS_KEPT sync records, oldest
first; each is the sync's summary (usb/merge.py) with ``at_ms`` and ``drive`` added.
Recording is best effort: an operator who may not write the data dir still synced.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

from meshnode.store.files import write_atomically

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["USB_SYNCS_KEPT", "USB_SYNCS_NAME", "record_usb_sync", "usb_syncs"]

USB_SYNCS_NAME = "usb-syncs.json"
USB_SYNCS_KEPT = 10
_MAX_FILE_BYTES = 1 << 20  # ten summaries are a few KB; a larger file is not ours


def usb_syncs(data_dir: Path) -> list[dict[str, object]]:
    """The recorded syncs, oldest first; [] when there are none or the file is unreadable."""
    try:
        with (data_dir / USB_SYNCS_NAME).open("rb") as file:
            records = json.loads(file.read(_MAX_FILE_BYTES + 1)[:_MAX_FILE_BYTES])
    except (OSError, ValueError):
        return []
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict)][-USB_SYNCS_KEPT:]


def record_usb_sync(data_dir: Path, record: dict[str, object]) -> None:
    """Add ``record`` as the newest sync, forgetting the oldest past USB_SYNCS_KEPT."""
    records = [*usb_syncs(data_dir), record][-USB_SYNCS_KEPT:]
    with contextlib.suppress(OSError):
        write_atomically(data_dir / USB_SYNCS_NAME, json.dumps(records).encode("utf-8"))

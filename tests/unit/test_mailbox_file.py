"""mailbox.json: saved while the node runs and on close, read (and checked) when it opens."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from meshnode.core.mailbox import Mailbox, MailboxConfig
from meshnode.host.mailbox_file import (
    MAILBOX_INDEX_NAME,
    IndexSaver,
    load_mailbox_index,
    save_mailbox_index,
)
from tests.unit.test_mailbox import STRANGER, FakeClock, capped_node, chain, ingest

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_private_entry_is_saved_within_the_interval_and_reloaded(tmp_path: Path) -> None:
    clock = FakeClock()
    node = capped_node(clock)
    seconds = [0.0]
    saver = IndexSaver(node, tmp_path, every_s=60, clock=lambda: seconds[0])
    node.add_entry_listener(saver.entry_stored)
    entries = chain(STRANGER, "p.....")
    ingest(node, entries[:3])
    path = tmp_path / MAILBOX_INDEX_NAME
    assert not path.exists()  # not on every entry
    seconds[0] = 61.0
    ingest(node, entries[3:])
    assert path.stat().st_mode & 0o777 == 0o600
    again = capped_node(clock)
    for entry in entries:  # the same store contents as the node that saved
        again.store.append(entry)
    load_mailbox_index(again, tmp_path)
    assert again.mailbox.floor(STRANGER.feed_id) == 1
    # Saved as entry 4 was stored: the two after it come with the next save.
    assert again.mailbox.charge(STRANGER.feed_id) == sum(len(e.raw) for e in entries[:4])
    saver.save()
    load_mailbox_index(again, tmp_path)
    assert again.mailbox.encode_index() == node.mailbox.encode_index()


def test_a_damaged_index_is_logged_and_the_node_starts_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / MAILBOX_INDEX_NAME).write_bytes(b'{"version": 1, "feeds": {"@x": []}}')
    node = capped_node(FakeClock())
    with caplog.at_level(logging.WARNING):
        load_mailbox_index(node, tmp_path)
    assert "mailbox index" in caplog.text
    assert node.mailbox.encode_index() == Mailbox(MailboxConfig()).encode_index()
    save_mailbox_index(node, tmp_path)  # and it is replaced on the next save
    load_mailbox_index(node, tmp_path)

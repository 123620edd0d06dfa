"""A drive with little room gets private messages before any public entry."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType
from meshnode.core.inbox import is_private
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from meshnode.types import FeedId, Seq
from meshnode.usb.drive import carried, init_drive, open_drive, save_drive
from meshnode.usb.merge import plan_writes, sync_here
from meshnode.usb.priority import private_first
from tests.fakes import TS_MS, identity
from tests.unit.test_mailbox import private_payload

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_800_000_000_000


def box(n: int) -> Node:
    return Node(
        identity(n),
        network_key=DEFAULT_NETWORK_KEY,
        store=MemoryStore(),
        rng=random.Random(n),
        clock_ms=lambda: TS,
    )


def follow(node: Node, other: Node) -> None:
    node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS_MS)


def copy_feed(into: Node, source: Node) -> None:
    for entry in source.iter_feed(source.feed_id):
        into.ingest(entry.raw)


def drive_entries(node: Node, path: Path, feed: FeedId) -> list[bool]:
    """Whether each entry of ``feed`` the drive carries is private, in seq order."""
    runs = carried(open_drive(path, DEFAULT_NETWORK_KEY, repair=False).manifest)
    if feed not in runs:
        return []
    first, latest = runs[feed]
    return [is_private(node.store.get(feed, Seq(s))) for s in range(first, latest + 1)]


def test_private_entries_go_first_when_the_drive_is_short_of_room(tmp_path: Path) -> None:
    carrier, friend, writer = box(1), box(2), box(3)
    follow(carrier, friend)
    follow(friend, writer)  # the writer is two hops from the carrier: ranked last
    for i in range(40):
        friend.post(f"public news {i} " + "x" * 100, timestamp_ms=TS_MS + i)
    for i in range(3):
        writer.post(f"hello {i}", timestamp_ms=TS_MS + i)
    payload = private_payload(writer.identity, friend.identity)
    writer.publish(ContentType.PRIVATE, payload, timestamp_ms=TS_MS + 9)
    for i in range(20):
        writer.post(f"later {i} " + "y" * 100, timestamp_ms=TS_MS + 10 + i)
    copy_feed(carrier, friend)
    copy_feed(carrier, writer)
    assert carrier.mailbox.private_seqs(writer.feed_id) == [4]

    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    drive = open_drive(tmp_path, DEFAULT_NETWORK_KEY, repair=True)
    plan = plan_writes(carrier, drive)
    assert [f for f, _, _ in plan][-1] == writer.feed_id  # without the rule: last
    assert private_first(carrier, plan)[0] == (writer.feed_id, 1, 4)
    drive.manifest = replace(drive.manifest, cap_bytes=drive.used_bytes() + 2000)
    save_drive(drive)
    report = sync_here(carrier, tmp_path, now_ms=TS)
    assert report.full == "cap"
    # The writer's feed up to its private message went first; its later posts did not fit.
    assert drive_entries(carrier, tmp_path, writer.feed_id) == [False, False, False, True]
    assert len(drive_entries(carrier, tmp_path, friend.feed_id)) < 40


def test_the_run_continues_without_a_gap_when_there_is_room(tmp_path: Path) -> None:
    carrier, writer = box(1), box(3)
    follow(carrier, writer)
    writer.post("before", timestamp_ms=TS_MS)
    payload = private_payload(writer.identity, carrier.identity)
    writer.publish(ContentType.PRIVATE, payload, timestamp_ms=TS_MS + 1)
    writer.post("after", timestamp_ms=TS_MS + 2)
    carrier.publish(
        ContentType.PRIVATE, private_payload(carrier.identity, writer.identity), timestamp_ms=TS_MS
    )
    carrier.post("own public", timestamp_ms=TS_MS + 1)
    copy_feed(carrier, writer)
    init_drive(tmp_path, DEFAULT_NETWORK_KEY, 10 << 20)
    sync_here(carrier, tmp_path, now_ms=TS)
    assert drive_entries(carrier, tmp_path, writer.feed_id) == [False, True, False]
    # Our own feed's private message is found by looking at its newest entries.
    assert drive_entries(carrier, tmp_path, carrier.feed_id) == [False, True, False]
    other = box(5)
    follow(other, writer)
    follow(other, carrier)
    report = sync_here(other, tmp_path, now_ms=TS)
    assert report.from_drive.rejected == 0
    assert other.store.latest_seq(writer.feed_id) == 3

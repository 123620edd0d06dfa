"""Private messages as people send them: `meshnode dm` on one node, over LoRa to a box, on a
USB drive to the recipient, read with `meshnode inbox`; and what everyone else can read."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.testing.emulator import EmulatedNode, LoRaEmulator
from tests.adapters.test_lora_emulator import PARAMS, _start, running
from tests.daemons import daemon_pool, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

TEXT = "meet at the well at noon"


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def inbox(pool: DaemonPool, data: Path) -> dict[str, Any]:
    return pool.json(data, "inbox")


def own_key(pool: DaemonPool, data: Path) -> str:
    own: Any = pool.json(data, "keys")["own"]
    return str(own["key"])


def carry(pool: DaemonPool, source: Path, *targets: Path) -> None:
    """Entries of ``source`` to each target by a bundle file (a quick hand-over)."""
    bundle = pool.root / f"{source.name}.mnb"
    pool.ok(source, "export", str(bundle))
    for target in targets:
        pool.ok(target, "import", str(bundle))


def test_a_message_crosses_lora_and_a_drive_and_only_its_recipient_reads_it(
    pool: DaemonPool,
) -> None:
    a, a_id = pool.init("a")
    box, box_id = pool.init("box")
    b, b_id = pool.init("b")
    c, _ = pool.init("c")
    pool.ok(b, "keys", "publish", "--home", box_id)  # b's mailbox is the box
    pool.ok(c, "keys", "publish")
    pool.ok(a, "follow", b_id)
    for data in (box, b, c):
        pool.ok(data, "follow", a_id)
    carry(pool, b, a)  # a learns b's key
    sent = pool.json(a, "dm", b_id, TEXT)
    assert sent["fits_one_lora_frame"] is True
    assert sent["pinned"] == [b_id]

    nodes = [EmulatedNode(name="a", driver="kiss"), EmulatedNode(name="box", driver="kiss")]
    with running(LoRaEmulator(nodes, params=PARAMS, seed=11)) as emulator:
        try:
            for name in ("a", "box"):
                _start(pool, name, "kiss", emulator.port(name))
            want = pool.feed(a)
            wait_for("the box to hold a's feed", lambda: pool.feed(box, a_id) == want or None, 60)
            # The box's own key does not open it (asked through the box's daemon).
            assert inbox(pool, box)["conversations"] == []
        finally:
            pool.stop_all()
        assert emulator.stats["a"].sent > 0
    assert any(e["type"] == "private" for e in pool.feed(box, a_id))

    drive = pool.root / "stick"
    drive.mkdir()
    pool.ok(box, "usb", "init", str(drive), "--cap", "4MiB")
    pool.ok(box, "usb", "sync", str(drive))
    for data in (b, c):
        pool.ok(data, "usb", "sync", str(drive))

    got = inbox(pool, b)
    assert got["warnings"] == []
    [conversation] = got["conversations"]
    assert conversation["with"] == [a_id]
    [message] = conversation["messages"]
    assert message["text"] == TEXT
    assert message["author"] == a_id
    assert message["recipients"] == [b_id]
    assert message["sent"] is False
    assert message["id"] == sent["id"]
    # c holds the very same entry, and cannot read it.
    assert any(e["id"] == sent["id"] for e in pool.feed(c, a_id))
    assert inbox(pool, c)["conversations"] == []
    # The sender reads its own message, and sees whom it is for and where it must get to.
    [mine] = inbox(pool, a)["conversations"]
    assert mine["with"] == [b_id]
    [own] = mine["messages"]
    assert own["text"] == TEXT
    assert own["sent"] is True
    assert own["delivered"] == [{"recipient": b_id, "homes": [box_id], "reached": []}]


def test_the_sender_sees_when_the_recipients_box_holds_it(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    box, box_id = pool.init("box")
    b, b_id = pool.init("b")
    pool.ok(b, "keys", "publish", "--home", box_id)
    pool.ok(box, "follow", a_id)
    pool.ok(a, "follow", b_id)
    carry(pool, b, a)
    sent = pool.json(a, "dm", b_id, TEXT)
    daemon_box = pool.start("box")
    try:
        pool.start("a", "--peer", daemon_box.address)
        want = pool.feed(a)
        wait_for("the box to hold a's feed", lambda: pool.feed(box, a_id) == want or None, 30)

        def reached() -> list[str] | None:
            [conversation] = inbox(pool, a)["conversations"]  # through a's daemon
            [delivery] = conversation["messages"][0]["delivered"]
            return delivery["reached"] or None

        assert wait_for("a to see the box holds it", reached, 30) == [box_id]
        reach: Any = pool.json(a, "reach", a_id)["reach"]
        assert reach[box_id] >= sent["seq"]
    finally:
        pool.stop_all()


def test_a_changed_key_is_warned_about_and_blocks_dm_until_accepted(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(b, "keys", "publish")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    carry(pool, b, a)
    pool.ok(a, "dm", b_id, "first")
    old = own_key(pool, b)
    pool.ok(b, "keys", "publish", "--new-key")  # b's phone was reset
    new = own_key(pool, b)
    assert new != old
    carry(pool, b, a)

    refused = pool.cli(a, "dm", b_id, "second")
    assert refused.returncode == 1
    assert b_id in refused.stderr
    assert old in refused.stderr
    assert new in refused.stderr
    assert "meshnode keys accept" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "WARNING: the encryption key of" in pool.ok(a, "inbox")
    [warning] = inbox(pool, a)["warnings"]
    assert old in warning
    assert new in warning
    assert len(inbox(pool, a)["conversations"][0]["messages"]) == 1  # "second" was not sent

    pool.ok(a, "keys", "accept", b_id)
    pool.ok(a, "dm", b_id, "second")
    assert inbox(pool, a)["warnings"] == []
    carry(pool, a, b)
    texts = [m["text"] for m in inbox(pool, b)["conversations"][0]["messages"]]
    assert texts == ["second", "first"]  # the old message still opens with the old key


def test_dm_refuses_recipients_without_a_key_and_names_it(pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(a, "follow", b_id)
    pool.ok(b, "post", "no key here")
    carry(pool, b, a)
    refused = pool.cli(a, "dm", b_id, "hello")
    assert refused.returncode == 1
    assert "has published no encryption key" in refused.stderr
    refused = pool.cli(a, "dm", "nobody-by-that-name", "hello")
    assert refused.returncode == 1
    assert "no one held has that name" in refused.stderr
    assert json.loads(pool.ok(a, "inbox", "--json"))["conversations"] == []

"""Serial benchmark: two nodes on a slow serial cable, A posts, B follows.

Runs the real radio interface of two nodes (meshnode/links/radio.py with ``driver =
"serial"``: KISS framing, paced writes, the shared-channel core), each on a pty of a cable
that carries bytes at the baud rate, 8N1, counting them per direction
(meshnode/testing/cable.py), on an event loop whose clock skips idle waits (bench/warp.py).
A posts 50 entries of 100 random characters; B follows A. At 1200 and 9600 baud:

* ``transmissions_per_entry``: entry frames put on the wire, by both, per entry (goal <= 1.02).
* ``wire_bytes_per_entry``: every byte written to the wire both ways (beacons, wants,
  framing; what still waits in the port when B holds all counts too), per entry;
  ``wire_bytes_ratio`` against ``framed_entry_bytes``, one entry as framed on the wire
  (goal <= 1.1). ``most_queued_bytes_a``: the most A ever had waiting for the wire.
* ``time_s``: from both ends up until B holds all; ``time_ratio`` against ``ideal_s``, the
  wire time of the framed entries alone (goal <= 1.15).
* ``lossy_*``: the same with 1% of the bytes dropped on the wire (both ways): delivered,
  time_s, and ``lossy_time_vs_clean`` (goal: all delivered, <= 2.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from meshnode.bench.radio import running_tasks
from meshnode.bench.warp import run_warped
from meshnode.codec.channel import channel_tag, encode_entry_message
from meshnode.codec.content import ContactAction
from meshnode.codec.message import decode_entry, encode_short_entry
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.host.config import RadioSection
from meshnode.links.radio import RadioInterface
from meshnode.radio.drivers import make_driver
from meshnode.radio.fragment import fragment
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.testing.cable import ThrottledCable
from meshnode.types import Seq

__all__ = ["bench_serial", "run_serial"]

_BAUDS = (1200, 9600)
_TS_MS = 1_700_000_000_000
_LIMIT_S = 3600.0
_LOSS = 0.01
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def bench_serial(entries: int = 50, seed: int = 1) -> dict[str, object]:
    """Clean and lossy runs at each baud rate, keyed by the rate."""
    out: dict[str, object] = {"entries": entries}
    for baud in _BAUDS:
        clean = run_serial(baud, entries, seed)
        lossy = run_serial(baud, entries, seed, drop_bytes=_LOSS)
        clean_s = float(str(clean["time_s"]))
        out[str(baud)] = clean | {
            "lossy_delivered": lossy["delivered"],
            "lossy_time_s": lossy["time_s"],
            "lossy_transmissions_per_entry": lossy["transmissions_per_entry"],
            "lossy_time_vs_clean": round(float(str(lossy["time_s"])) / clean_s, 3),
        }
    return out


def run_serial(
    baud: int, entries: int = 50, seed: int = 1, *, drop_bytes: float = 0.0
) -> dict[str, object]:
    """A posts ``entries`` texts of 100 random characters; B follows A over the cable."""
    logger = logging.getLogger("meshnode")
    level = logger.level
    logger.setLevel(logging.WARNING)  # a benchmark prints JSON only
    try:
        result: dict[str, object] = run_warped(_scenario(baud, entries, seed, drop_bytes))
    finally:
        logger.setLevel(level)
    return result


def _node(i: int, seed: int) -> Node:
    who = Identity(bytes([0x50 + i]) * 32)
    rng = random.Random(seed * 1000 + i)
    return Node(who, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=rng)


def _section(port: str, baud: int) -> RadioSection:
    return RadioSection(name="cable", driver="serial", port=port, baud=baud)


def _framed_bytes(node: Node, section: RadioSection, entries: int) -> int:
    """Wire bytes of the entries as the channel frames them (short form, KISS)."""
    driver = make_driver(section)
    feed = node.feed_id
    tag = channel_tag(feed, node.network_key)
    total = 0
    for seq in range(1, entries + 1):
        raw = node.store.get(feed, Seq(seq))
        body = encode_short_entry(decode_entry(raw, max_content_bytes=1 << 20))
        message = encode_entry_message(bytes(feed[:4]), tag, seq, body)
        for packet in fragment(message, mtu_bytes=driver.packet_mtu, message_id=0):
            total += sum(len(write) for write in driver.encode(packet))
    return total


async def _scenario(baud: int, entries: int, seed: int, drop_bytes: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    a, b = _node(0, seed), _node(1, seed)
    b.set_contact(ContactAction.FOLLOW, a.feed_id, timestamp_ms=_TS_MS)
    text_rng = random.Random(seed)
    for k in range(entries):
        text = "".join(text_rng.choice(_ALPHABET) for _ in range(100))
        a.post(text, timestamp_ms=_TS_MS + k)
    delivered = asyncio.Event()

    def appended(*_: object) -> None:
        if b.store.latest_seq(a.feed_id) >= entries:
            delivered.set()

    b.add_append_listener(appended)
    cable = ThrottledCable(baud, drop_bytes=drop_bytes, seed=seed)
    interfaces = [
        RadioInterface(node, _section(cable.port(name), baud), rng=random.Random(seed * 31 + i))
        for i, (name, node) in enumerate((("a", a), ("b", b)))
    ]
    try:
        async with running_tasks(cable.run, *(i.run for i in interfaces)):
            start = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivered.wait(), _LIMIT_S)
            time_s = loop.time() - start
        framed = _framed_bytes(a, _section("", baud), entries)
        # Written, not only carried so far: what waits in the port goes on the wire too.
        wire = cable.written_bytes("a") + cable.written_bytes("b")
        ideal_s = framed * cable.byte_s
        sent = sum(i.channel.stats.entries_sent for i in interfaces)
        return {
            "baud": baud,
            "drop_bytes": drop_bytes,
            "delivered": round(b.store.latest_seq(a.feed_id) / entries, 4),
            "transmissions_per_entry": round(sent / entries, 3),
            "framed_entry_bytes": round(framed / entries, 1),
            "wire_bytes_per_entry": round(wire / entries, 1),
            "wire_bytes_ratio": round(wire / framed, 3),
            "wire_bytes_a_to_b": cable.written_bytes("a"),
            "wire_bytes_b_to_a": cable.written_bytes("b"),
            "most_queued_bytes_a": cable.most_queued_bytes("a"),
            "dropped_bytes": cable.dropped_bytes("a") + cable.dropped_bytes("b"),
            "time_s": round(time_s, 2),
            "ideal_s": round(ideal_s, 2),
            "time_ratio": round(time_s / ideal_s, 3),
        }
    finally:
        cable.close()

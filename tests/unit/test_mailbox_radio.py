"""On a radio channel, a feed with a private message owed is served before public ones."""

from __future__ import annotations

import random

from meshnode.codec.channel import EntryMessage, channel_tag, decode_message, encode_want
from meshnode.codec.content import ContactAction
from meshnode.codec.message import ContentType
from meshnode.core.channel import Channel, ChannelConfig
from meshnode.secure.identity import DEFAULT_NETWORK_KEY
from tests.fakes import TS_MS
from tests.unit.test_mailbox import private_payload
from tests.unit.test_mailbox_usb import box as node


def served_order(private: bool, *, own: bool = False) -> list[tuple[bytes, int]]:
    """(feed tag, seq) of the entries a box sends to a WANT naming a public feed first, then
    the writer's (the box itself with ``own``)."""
    box, news, asker = node(1), node(2), node(4)
    writer = box if own else node(3)
    for i in range(4):
        news.post(f"public news {i}", timestamp_ms=TS_MS + i)
    writer.post("hello", timestamp_ms=TS_MS)
    if private:
        payload = private_payload(writer.identity, asker.identity)
        writer.publish(ContentType.PRIVATE, payload, timestamp_ms=TS_MS + 1)
    else:
        writer.post("not private", timestamp_ms=TS_MS + 1)
    for author in (news, writer) if not own else (news,):
        box.set_contact(ContactAction.FOLLOW, author.feed_id, timestamp_ms=TS_MS)
        for entry in author.iter_feed(author.feed_id):
            box.ingest(entry.raw)
    channel = Channel(box, config=ChannelConfig(), rng=random.Random(1))
    channel.start(0.0)
    tags = [channel_tag(f.feed_id, DEFAULT_NETWORK_KEY) for f in (news, writer)]
    channel.receive(encode_want(bytes(asker.feed_id[:4]), [(t, 1, True) for t in tags]), 1.0)
    sent: list[tuple[bytes, int]] = []
    now = 1.0
    while now < 120 and len(sent) < 6:
        tx = channel.poll_transmit(now, control_ok=True, data_ok=True)
        if tx is not None and isinstance(message := decode_message(tx.message), EntryMessage):
            sent.append((message.tag, message.seq))
        now = max(now + 0.01, channel.next_deadline() or now + 1)
    return sent


def test_a_private_message_goes_before_the_public_feeds_asked_with_it() -> None:
    public = served_order(private=False)
    news_tag = public[0][0]
    assert len(public) == 6
    assert public[0] == (news_tag, 1)  # in turn, as asked: the news feed first
    first_two = served_order(private=True)[:2]
    writer_tag = next(tag for tag, _ in public if tag != news_tag)
    assert first_two == [(writer_tag, 1), (writer_tag, 2)]  # up to the private one


def test_our_own_private_message_goes_first_too() -> None:
    [(news_tag, _), (own_tag, _), *_] = served_order(private=False, own=True)
    sent = served_order(private=True, own=True)
    assert sent[:3] == [(own_tag, 1), (own_tag, 2), (news_tag, 1)]  # hello, private, then in turn

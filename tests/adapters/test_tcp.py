"""The daemon's TCP side in one process: real loopback sockets, real handshakes, real core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.codec.content import ContactAction
from meshnode.codec.frame import FrameType
from meshnode.codec.framing import (
    LinkControl,
    StreamDeframer,
    encode_link_control,
    encode_stream_frame,
)
from meshnode.codec.varint import encode_varint
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.daemon import service as service_module
from meshnode.daemon.service import Service, ServiceSettings
from meshnode.host.address import PeerAddress
from meshnode.host.sdnotify import Notifier
from meshnode.links.discovery import PeerSeen
from meshnode.links.tcp import TcpSettings
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity
from meshnode.secure.shs import ACCEPT_BYTES, HELLO_BYTES, ClientHandshake
from meshnode.types import FeedId, PeerId
from tests.fakes import TS_MS, identity, make_chain

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from meshnode.secure.boxstream import BoxStreamDecoder, BoxStreamEncoder

pytestmark = pytest.mark.integration

A, B, C = identity(1), identity(2), identity(3)
LOCAL = "127.0.0.1"


def make_node(who: Identity, *follows: Identity, key: bytes = DEFAULT_NETWORK_KEY) -> Node:
    node = Node(who, network_key=key, store=MemoryStore(), rng=random.Random(1))
    for other in follows:
        node.set_contact(ContactAction.FOLLOW, other.feed_id, timestamp_ms=TS_MS)
    return node


@asynccontextmanager
async def running(
    node: Node,
    who: Identity,
    *,
    peers: tuple[PeerAddress, ...] = (),
    discovery: Callable[[Callable[[PeerSeen], None], int], Coroutine[Any, Any, None]] | None = None,
    **settings: Any,
) -> AsyncIterator[Service]:
    """A Service on 127.0.0.1 with an ephemeral port, stopped on the way out."""
    tcp = TcpSettings(
        handshake_timeout_s=settings.pop("handshake_timeout_s", 5.0),
        idle_timeout_s=settings.pop("idle_timeout_s", 30.0),
    )
    config = ServiceSettings(
        listen_host=LOCAL,
        listen_port=0,
        peers=peers,
        tcp=tcp,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        **settings,
    )
    control_dir = Path(tempfile.mkdtemp(prefix="mn"))
    svc = Service(
        node,
        who,
        config,
        notifier=Notifier({}),
        control_path=control_dir / "control.sock",
        discovery=discovery,
    )
    task = asyncio.create_task(svc.run())
    try:
        await until(lambda: bool(svc.listening))
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 10)
        shutil.rmtree(control_dir, ignore_errors=True)


def port_of(svc: Service) -> int:
    return int(svc.listening[0].rsplit(":", 1)[1])


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for ``condition`` with a deadline (real I/O cannot use the fake clock)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - state changes in other tasks, no event
            await asyncio.sleep(0.01)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def raw_session(
    port: int, who: Identity, server: Identity, key: bytes = DEFAULT_NETWORK_KEY
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, BoxStreamEncoder, BoxStreamDecoder]:
    """A hand-driven client: handshake done, box-stream keys in hand."""
    reader, writer = await asyncio.open_connection(LOCAL, port)
    hs = ClientHandshake(
        identity=who,
        server=PeerId(server.feed_id),
        network_key=key,
        ephemeral_secret=bytes([who.seed[0]]) * 32,
    )
    writer.write(hs.start())
    writer.write(hs.receive(await reader.readexactly(HELLO_BYTES)))
    hs.receive(await reader.readexactly(ACCEPT_BYTES))
    assert hs.result is not None
    return reader, writer, hs.result.encoder(), hs.result.decoder()


async def closed_by_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float = 5.0
) -> bool:
    """True when the server ends the connection within the timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return True


def test_static_peer_without_key_is_learned_and_synced() -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        for i in range(50):
            a.post(f"post {i}", timestamp_ms=TS_MS + i)
        async with running(a, A) as sa:
            peer = PeerAddress(host=LOCAL, port=port_of(sa))
            async with running(b, B, peers=(peer,)) as sb:
                assert sb.control.path.stat().st_mode & 0o777 == 0o660
                await until(lambda: b.store.latest_seq(A.feed_id) == 51)  # follow + 50 posts
                assert sb.links[PeerId(A.feed_id)].outbound
                assert not sa.links[PeerId(B.feed_id)].outbound
                a.post("live", timestamp_ms=TS_MS + 99)
                sa._pump()
                await until(lambda: b.store.latest_seq(A.feed_id) == 52)
                listed = sb._peers_request(b, {})["peers"]
                assert isinstance(listed, list)
                assert [p["connected"] for p in listed] == [True]
        assert b.check().ok

    run(scenario())


def test_hostile_inputs_close_one_connection_and_the_node_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a = make_node(A, B)
        a.post("still here", timestamp_ms=TS_MS)
        async with running(a, A, handshake_timeout_s=1.0) as sa:
            port = port_of(sa)
            # 1. garbage instead of a hello
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(bytes(range(64)))
            assert await closed_by_server(reader, writer)
            # 2. a truncated hello, then silence: the handshake timeout ends it
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(b"\x01" * 30)
            assert await closed_by_server(reader, writer)
            # 3. a good handshake, then bytes that are not box-stream
            reader, writer, _, _ = await raw_session(port, C, A)
            writer.write(bytes(200))
            assert await closed_by_server(reader, writer)
            # 4. a good handshake, then an oversized frame length inside box-stream
            reader, writer, enc, _ = await raw_session(port, C, A)
            writer.write(enc.encode(encode_varint(10 << 20) + b"x" * 100))
            assert await closed_by_server(reader, writer)
            # 5. a good handshake, then a frame the replication core does not know
            reader, writer, enc, _ = await raw_session(port, C, A)
            writer.write(enc.encode(encode_stream_frame(b"\x09junk")))
            assert await closed_by_server(reader, writer)
            # and a real peer still syncs
            b = make_node(B, A)
            peer = PeerAddress(host=LOCAL, port=port, feed_id=FeedId(A.feed_id))
            async with running(b, B, peers=(peer,)):
                await until(lambda: b.store.latest_seq(A.feed_id) == 2)
        assert not a.store.head(C.feed_id)
        text = caplog.text
        assert "handshake with 127.0.0.1" in text
        assert "no answer within 1 s" in text
        assert "frame length" in text
        assert "unknown frame type 9" in text  # PeerMisbehaved, then dropped

    run(scenario())


def test_fifty_simultaneous_connections_each_get_a_session() -> None:
    async def scenario() -> None:
        a = make_node(A)
        # Fifty strangers from one address: lift the limits on those (tests/hostile/).
        async with running(a, A, max_connections_per_address=50, reserved_share=0.0) as sa:
            port = port_of(sa)

            async def client(n: int) -> int:
                reader, writer, _, dec = await raw_session(port, identity(100 + n), A)
                deframer = StreamDeframer()
                frames: list[bytes] = []
                while not frames:
                    for body in dec.feed(await reader.read(65536)):
                        frames += [f for f in deframer.feed(body) if f[0] != 0]
                await until(lambda: len(sa.links) == 50)
                writer.close()
                await writer.wait_closed()
                return frames[0][0]

            first_frames = await asyncio.gather(*(client(n) for n in range(50)))
            assert first_frames == [FrameType.HELLO] * 50

    run(scenario())


def test_connections_past_the_limit_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        a = make_node(A)
        async with running(a, A, max_connections=2) as sa:
            port = port_of(sa)
            first = await raw_session(port, identity(10), A)
            second = await raw_session(port, identity(11), A)
            await until(lambda: len(sa.links) == 2)
            with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                await raw_session(port, identity(12), A)
            assert len(sa.links) == 2
            for session in (first, second):
                session[1].close()

    run(scenario())
    assert "refusing a connection from 127.0.0.1: 2 links open" in caplog.text


def test_simultaneous_dials_settle_on_the_connection_of_the_smaller_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "_SECOND_DIALER_DELAY_S", 0.0)

    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        async with running(a, A) as sa, running(b, B) as sb:
            sa._add_target(PeerAddress(host=LOCAL, port=port_of(sb), feed_id=B.feed_id), "mdns")
            sb._add_target(PeerAddress(host=LOCAL, port=port_of(sa), feed_id=A.feed_id), "mdns")
            smaller_is_a = A.feed_id < B.feed_id

            def settled() -> bool:
                la, lb = sa.links.get(PeerId(B.feed_id)), sb.links.get(PeerId(A.feed_id))
                return (
                    la is not None
                    and lb is not None
                    and la.outbound == smaller_is_a
                    and lb.outbound != smaller_is_a
                )

            await until(settled)
            await asyncio.sleep(0.5)  # and it stays that way: no flapping
            assert settled()
            assert b.store.latest_seq(A.feed_id) == 1

    run(scenario())


def test_silent_peer_hits_the_idle_timeout_but_pings_keep_a_live_link() -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        async with running(a, A, idle_timeout_s=1.0) as sa:
            reader, writer, _, _ = await raw_session(port_of(sa), C, A)
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await closed_by_server(reader, writer, timeout_s=5.0)
            assert 0.9 <= loop.time() - started < 3.0
            peer = PeerAddress(host=LOCAL, port=port_of(sa), feed_id=A.feed_id)
            async with running(b, B, peers=(peer,), idle_timeout_s=1.0) as sb:
                await until(lambda: PeerId(A.feed_id) in sb.links)
                link = sb.links[PeerId(A.feed_id)]
                await asyncio.sleep(2.5)
                assert sb.links.get(PeerId(A.feed_id)) is link
                assert link.rtt_s is not None

    run(scenario())


def test_failing_discovery_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def discovery(on_seen: Callable[[PeerSeen], None], port: int) -> None:
        calls.append(port)
        if len(calls) == 1:
            raise RuntimeError("multicast socket went away")
        await asyncio.Event().wait()

    async def scenario() -> None:
        async with running(make_node(A), A, discovery=discovery) as sa:
            await until(lambda: len(calls) == 2, timeout_s=5.0)
            assert calls == [port_of(sa)] * 2

    run(scenario())
    assert "mdns failed; restarting it in 1 s" in caplog.text
    assert "multicast socket went away" in caplog.text


def test_a_peer_seen_by_discovery_is_dialed() -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        b.post("found me", timestamp_ms=TS_MS)
        async with running(b, B) as sb:
            seen = PeerSeen(feed_id=B.feed_id, host=LOCAL, port=port_of(sb))

            async def discovery(on_seen: Callable[[PeerSeen], None], port: int) -> None:
                on_seen(seen)
                await asyncio.Event().wait()

            async with running(a, A, discovery=discovery):
                await until(lambda: a.store.latest_seq(B.feed_id) == 2)

    run(scenario())


def test_a_peer_that_sends_but_never_reads_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a = make_node(A)
        async with running(a, A, idle_timeout_s=1.0) as sa:
            _, writer, enc, _ = await raw_session(port_of(sa), C, A)
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # never read: the daemon's PONGs pile up
            ping = encode_stream_frame(encode_link_control(LinkControl.PING, bytes(8)))
            loop = asyncio.get_running_loop()
            started = loop.time()
            with contextlib.suppress(ConnectionError):
                while PeerId(C.feed_id) in sa.links or loop.time() - started < 0.2:
                    writer.write(enc.encode(ping * 300))  # a fresh nonce every time
                    await asyncio.wait_for(writer.drain(), 5)
                    assert loop.time() - started < 15, "the daemon kept a peer that never reads"
            await until(lambda: PeerId(C.feed_id) not in sa.links)
            writer.close()
            # and it still serves others
            b = make_node(B, A)
            a.post("still serving", timestamp_ms=TS_MS)
            peer = PeerAddress(host=LOCAL, port=port_of(sa), feed_id=A.feed_id)
            async with running(b, B, peers=(peer,)):
                await until(lambda: b.store.latest_seq(A.feed_id) == 1)

    run(scenario())
    assert "the peer took nothing we sent for 1 s" in caplog.text


def test_a_rule_breaker_is_dropped_refused_for_a_while_and_nothing_leaks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a = make_node(A)
        async with running(a, A) as sa:
            reader, writer, enc, _ = await raw_session(port_of(sa), C, A)
            writer.write(enc.encode(encode_stream_frame(b"\x09junk")))
            assert await closed_by_server(reader, writer)
            await until(lambda: PeerId(C.feed_id) not in sa.links)
            assert PeerId(C.feed_id) not in sa._link_ended
            assert sa._all_detached.is_set()
            # straight back with the same key: refused after the handshake
            reader, writer, _, _ = await raw_session(port_of(sa), C, A)
            assert await closed_by_server(reader, writer)
            assert PeerId(C.feed_id) not in sa.links
            # others are still welcome
            _, other, _, _ = await raw_session(port_of(sa), B, A)
            await until(lambda: PeerId(B.feed_id) in sa.links)
            other.close()

    run(scenario())
    assert "for 10 s: unknown frame type 9" in caplog.text
    assert "refusing @" in caplog.text


def test_silent_connections_do_not_stop_the_node_dialing_out() -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        b.post("reachable", timestamp_ms=TS_MS)
        async with running(b, B) as sb, running(a, A, max_connections=3) as sa:
            silent = [await asyncio.open_connection(LOCAL, port_of(sa)) for _ in range(3)]
            await until(lambda: sa._handshakes == 3)
            sa._add_target(PeerAddress(host=LOCAL, port=port_of(sb), feed_id=B.feed_id), "test")
            await until(lambda: a.store.latest_seq(B.feed_id) == 2)
            for _, writer in silent:
                writer.close()

    run(scenario())


def test_a_static_peer_that_is_this_node_is_dialed_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a = make_node(A)
        async with running(a, A) as sa:
            sa._add_target(PeerAddress(host=LOCAL, port=port_of(sa)), "config")
            await until(lambda: "not dialing it" in caplog.text)
            await asyncio.sleep(0.5)  # reconnect_min_s is 0.1: a loop would have redialed
            assert sa.targets == {}

    run(scenario())
    assert caplog.text.count("is this node itself") == 1


def test_mdns_cannot_move_a_static_peer_and_a_redial_replaces_a_stale_link() -> None:
    async def scenario() -> None:
        a = make_node(A, C)
        async with running(a, A) as sa:
            static = PeerAddress(host=LOCAL, port=9, feed_id=B.feed_id)
            sa.targets["static"] = service_module._Target(address=static, source="config")
            sa._on_seen(PeerSeen(feed_id=B.feed_id, host="10.9.9.9", port=7420))
            assert sa.targets["static"].address == static
            assert len(sa.targets) == 1
            # C's first connection went half-open; C dials again in the same direction
            first = await raw_session(port_of(sa), C, A)
            await until(lambda: PeerId(C.feed_id) in sa.links)
            old = sa.links[PeerId(C.feed_id)]
            second = await raw_session(port_of(sa), C, A)
            await until(lambda: sa.links.get(PeerId(C.feed_id)) not in (None, old))
            assert await closed_by_server(first[0], first[1])
            second[1].close()

    run(scenario())


def test_the_daemon_logs_the_core_events_of_its_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def scenario() -> None:
        a = make_node(A, C)
        a.ingest(make_chain(C, 1)[0].raw)
        async with running(a, A) as sa:
            # what a drive synced through the daemon would do: a second seq 1 proves a fork
            a.ingest(make_chain(C, 1, size=30)[0].raw)
            sa._pump()
            await until(lambda: "forked at seq 1" in caplog.text)

    run(scenario())
    assert [r.name for r in caplog.records if "forked" in r.getMessage()] == ["meshnode.events"]

"""Connection slots under strangers: reserved room, a cap per address, idle eviction.

The pure bookkeeping (daemon/slots.py) is driven by hypothesis on a fake clock; the daemon
is run in this process on real loopback sockets, strangers being throwaway identities that
finish the secret handshake from addresses 127.0.0.2, 127.0.0.3, ... (all loopback on
Linux) and then say nothing. A real ``meshnode run`` process gets the same (slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.daemon.links import LinkTable
from meshnode.daemon.slots import SlotLimits, Slots, address_key
from meshnode.host.address import PeerAddress
from meshnode.links.tcp import TcpSettings
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, Identity, parse_feed_id
from meshnode.secure.shs import ACCEPT_BYTES, HELLO_BYTES, ClientHandshake
from meshnode.types import FeedId, PeerId
from tests.adapters.test_tcp import LOCAL, make_node, port_of, run, running, until
from tests.daemons import daemon_pool, wait_for
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from meshnode.core.node import Node
    from meshnode.daemon.service import Service

A, B, C = identity(1), identity(2), identity(3)
_A, _B = PeerId(A.feed_id), PeerId(B.feed_id)


def stranger(n: int) -> Identity:
    """A throwaway identity: nobody follows it."""
    return Identity(n.to_bytes(4, "big") * 8)


# -- the bookkeeping alone -------------------------------------------------------------------


def test_address_keys_count_one_host_once() -> None:
    assert address_key("10.0.0.7") == "10.0.0.7"
    assert address_key("::ffff:10.0.0.7") == "10.0.0.7"
    # one /64 is one host's: SLAAC and privacy addresses do not multiply its slots
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("?") == "?"


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["in", "in", "out", "useful", "leave", "tick"]),
        st.integers(0, 30),  # which peer (0..4 followed, the rest strangers)
        st.integers(0, 3),  # which address
    ),
    max_size=120,
)


@settings(max_examples=300)
@given(ops=_OPS, reserved=st.integers(0, 6), per_address=st.integers(1, 5))
def test_strangers_never_take_the_reserved_slots_nor_evict_protected_or_busy_links(
    ops: list[tuple[str, int, int]], reserved: int, per_address: int
) -> None:
    limits = SlotLimits(max_links=8, reserved=reserved, per_address=per_address, evict_idle_s=10)
    followed = {PeerId(bytes([p]) * 32) for p in range(5)}
    slots = Slots(limits, lambda peer: peer in followed)
    now = 0.0
    for op, n, a in ops:
        peer, address = PeerId(bytes([n]) * 32), f"10.0.0.{a}"
        if op == "tick":
            now += 4.0
        elif op == "useful":
            slots.useful(peer, now)
        elif op == "leave":
            slots.detached(peer)
        elif peer not in slots.links:
            where = address if op == "in" else None
            admission = slots.admit(peer, address=where, now=now)
            if admission.ok:
                victim = admission.evict
                if victim is not None:
                    assert victim not in followed  # never a followed or configured peer
                    assert now - slots.links[victim].useful_at >= limits.evict_idle_s
                    if where is not None and peer not in followed:
                        assert slots.links[victim].address  # a stranger evicts strangers only
                    slots.detached(victim)
                slots.attached(peer, address=where, now=now)
            else:
                assert admission.reason
        strangers = [p for p, s in slots.links.items() if s.address and p not in followed]
        assert len(slots.links) <= limits.max_links
        assert len(strangers) <= limits.max_links - limits.reserved
        for key in {slots.links[p].address for p in strangers}:
            assert sum(slots.links[p].address == key for p in strangers) <= per_address


def test_a_followed_peer_or_a_dial_gets_a_slot_while_strangers_hold_theirs() -> None:
    followed = PeerId(bytes([1]) * 32)
    slots = Slots(SlotLimits(max_links=4, reserved=1, per_address=8), lambda p: p == followed)
    for n in range(3):
        slots.attached(PeerId(bytes([10 + n]) * 32), address="10.0.0.9", now=0.0)
    refused = slots.admit(PeerId(bytes([20]) * 32), address="10.0.0.8", now=1.0)
    assert not refused.ok
    assert "3 of 3 links for peers not followed" in refused.reason
    assert slots.admit(followed, address="10.0.0.8", now=1.0).ok
    assert slots.room_to_dial(1.0)
    slots.attached(followed, address="10.0.0.8", now=1.0)
    assert not slots.room_to_dial(1.0)  # full, nothing idle enough yet
    # two minutes on, an idle stranger makes room for a dial, never the followed peer
    later = 1.0 + limits_idle()
    assert slots.room_to_dial(later)
    assert slots.admit(PeerId(bytes([30]) * 32), address=None, now=later).evict in {
        PeerId(bytes([10 + n]) * 32) for n in range(3)
    }


def limits_idle() -> float:
    return SlotLimits().evict_idle_s


def test_the_idlest_stranger_goes_first_and_one_that_delivers_stays() -> None:
    slots = Slots(
        SlotLimits(max_links=3, reserved=0, per_address=8, evict_idle_s=10), lambda p: False
    )
    a, b, c, d = (PeerId(bytes([n]) * 32) for n in range(4))
    for peer, at in ((a, 0.0), (b, 1.0), (c, 2.0)):
        slots.attached(peer, address=f"10.0.0.{at:.0f}", now=at)
    slots.useful(a, 5.0)  # a carried an entry
    assert slots.admit(d, address="10.0.0.9", now=14.0).evict == b
    assert not slots.admit(d, address="10.0.0.9", now=10.5).ok  # nobody idle for 10 s yet


# -- a daemon on loopback ----------------------------------------------------------------------


async def stranger_session(
    port: int, who: Identity, source: str, server: PeerId = _A
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A throwaway identity that finishes the handshake from ``source``, then keeps quiet."""
    reader, writer = await asyncio.open_connection(LOCAL, port, local_addr=(source, 0))
    hs = ClientHandshake(
        identity=who,
        server=server,
        network_key=DEFAULT_NETWORK_KEY,
        ephemeral_secret=who.seed[:1] * 32,
    )
    writer.write(hs.start())
    writer.write(hs.receive(await reader.readexactly(HELLO_BYTES)))
    hs.receive(await reader.readexactly(ACCEPT_BYTES))
    return reader, writer


@contextlib.asynccontextmanager
async def idle_strangers(
    svc: Service, count: int, *, per_source: int, first: int = 0, source: str = ""
) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """``count`` authenticated, silent strangers, ``per_source`` from each address (all
    from ``source`` if given)."""
    writers = []
    try:
        for n in range(first, first + count):
            where = source or f"127.0.0.{2 + n // per_source}"
            _, writer = await stranger_session(port_of(svc), stranger(1000 + n), where)
            writers.append(writer)
        yield writers
    finally:
        for writer in writers:
            writer.close()


def strangers_linked(svc: Service) -> int:
    return sum(1 for peer, link in svc.links.items() if not link.outbound and peer != _B)


def test_idle_strangers_cannot_lock_out_a_followed_peer_nor_stop_dialing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The attacker's trial: every inbound slot strangers may take is held by a silent
    throwaway identity; the followed peer B still connects and syncs, and A still dials
    the configured peer C and syncs from it."""
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a, b, c = make_node(A, B, C), make_node(B, A), make_node(C, A)
        b.post("from a friend", timestamp_ms=TS_MS)
        c.post("from a listed peer", timestamp_ms=TS_MS)
        async with (
            running(a, A, max_connections=8, max_connections_per_address=2) as sa,
            idle_strangers(sa, 6, per_source=2),  # 8 x (1 - 0.25) = 6 for strangers
        ):
            await until(lambda: strangers_linked(sa) == 6)
            # a seventh stranger, from a fresh address, finds no room
            reader, writer = await stranger_session(port_of(sa), stranger(2000), "127.0.0.9")
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):  # refused once the handshake says who it is
                    pass
            writer.close()
            assert strangers_linked(sa) == 6
            peer_a = PeerAddress(host=LOCAL, port=port_of(sa), feed_id=FeedId(A.feed_id))
            async with running(c, C) as sc, running(b, B, peers=(peer_a,)):
                to_c = PeerAddress(host=LOCAL, port=port_of(sc), feed_id=FeedId(C.feed_id))
                sa._add_target(to_c, "test")
                await until(
                    lambda: a.store.latest_seq(B.feed_id) == a.store.latest_seq(C.feed_id) == 2
                )
                assert strangers_linked(sa) == 6
                assert len(sa.links) == 8

    run(scenario())
    assert "links for peers not followed are taken, none idle (lan.reserved_share)" in caplog.text


def test_one_address_gets_its_share_and_a_friend_behind_it_still_gets_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        b.post("from behind the same address", timestamp_ms=TS_MS)
        async with (
            running(a, A, max_connections_per_address=3) as sa,
            idle_strangers(sa, 3, per_source=3, source=LOCAL),  # B dials from there too
        ):
            await until(lambda: strangers_linked(sa) == 3)
            # a fourth stranger from there is refused once it says who it is
            reader, writer = await stranger_session(port_of(sa), stranger(2000), LOCAL)
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            writer.close()
            assert strangers_linked(sa) == 3
            # silent connections from there: a fourth handshake drops the oldest
            silent = [
                await asyncio.open_connection(LOCAL, port_of(sa), local_addr=(LOCAL, 0))
                for _ in range(4)
            ]
            async with asyncio.timeout(5):
                assert await silent[0][0].read() == b""
            assert sa._handshakes == 3
            for _, quiet in silent:
                quiet.close()
            await until(lambda: sa._handshakes == 0)
            # a followed peer behind the same address is not counted against it
            peer_a = PeerAddress(host=LOCAL, port=port_of(sa), feed_id=FeedId(A.feed_id))
            async with running(b, B, peers=(peer_a,)):
                await until(lambda: a.store.latest_seq(B.feed_id) == 2)
            async with idle_strangers(sa, 3, per_source=3, first=3):  # 127.0.0.3 is welcome
                await until(lambda: strangers_linked(sa) == 6)

    run(scenario())
    assert "3 links from 127.0.0.1 (lan.max_connections_per_address)" in caplog.text
    assert (
        "dropping the oldest unfinished handshake, from 127.0.0.1: 3 in progress from there "
        "(lan.max_connections_per_address)"
    ) in caplog.text


def test_an_idle_stranger_makes_room_for_a_newcomer_when_the_room_is_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        a = make_node(A)
        async with (
            running(a, A, max_connections=4, reserved_share=0.5, evict_idle_s=0.3) as sa,
            idle_strangers(sa, 2, per_source=1),
        ):
            await until(lambda: strangers_linked(sa) == 2)
            loop = asyncio.get_running_loop()
            slots = sa.table.slots.links
            await until(lambda: all(loop.time() - s.useful_at > 0.3 for s in slots.values()))
            async with idle_strangers(sa, 1, per_source=1, first=5):
                await until(lambda: PeerId(stranger(1005).feed_id) in sa.links)
                assert strangers_linked(sa) == 2
                assert PeerId(stranger(1000).feed_id) not in sa.links  # the idlest went

    run(scenario())
    assert "closing the idle link to" in caplog.text


def test_silent_handshakes_from_many_addresses_give_way_to_a_real_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        a, b = make_node(A, B), make_node(B, A)
        b.post("through the crowd", timestamp_ms=TS_MS)
        async with running(a, A, max_connections=4, handshake_timeout_s=30.0) as sa:
            silent = [
                await asyncio.open_connection(LOCAL, port_of(sa), local_addr=(f"127.0.1.{n}", 0))
                for n in range(1, 5)
            ]
            await until(lambda: sa._handshakes == 4)
            peer_a = PeerAddress(host=LOCAL, port=port_of(sa), feed_id=FeedId(A.feed_id))
            async with running(b, B, peers=(peer_a,)):
                await until(lambda: a.store.latest_seq(B.feed_id) == 2)
            for _, writer in silent:
                writer.close()

    run(scenario())
    assert "dropping the oldest unfinished handshake, from 127.0.1.1" in caplog.text


def test_tables_keyed_by_peer_ids_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshnode.daemon import links as links_module

    monkeypatch.setattr(links_module, "_MAX_PEER_STATS", 8)
    monkeypatch.setattr(links_module, "_MAX_BANS", 8)

    async def scenario() -> None:
        a = make_node(A, B)
        table = LinkTable(a, A, tcp=TcpSettings(), limits=SlotLimits(), pump=lambda: None)
        table.entry_received(PeerId(B.feed_id))  # a useful, followed peer
        for n in range(100):
            table.stats_of(PeerId(stranger(n).feed_id))
            table.ban(PeerId(stranger(n).feed_id), "test")
        assert len(table.stats) == 8
        assert len(table._banned) == 8
        assert PeerId(B.feed_id) in table.stats  # the useful one is kept
        assert table.banned_for(PeerId(stranger(99).feed_id)) > 0  # the latest ban is kept

    asyncio.run(scenario())


# -- a real `meshnode run` --------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_daemon_full_of_idle_strangers_still_syncs_a_friend_and_dials_out() -> None:
    with daemon_pool() as pool:
        a_data, a_id = pool.init("a")
        b_data, b_id = pool.init("b")
        c_data, c_id = pool.init("c")
        pool.ok(b_data, "post", "from a friend")
        pool.ok(c_data, "post", "from a listed peer")
        pool.ok(a_data, "follow", b_id)
        pool.ok(a_data, "follow", c_id)
        daemon_c = pool.start("c")
        config = pool.root / "a.toml"
        config.write_text(
            "[lan]\nmax_connections = 8\nmax_connections_per_address = 2\n"
            f'peers = ["{daemon_c.address}"]\n'  # its key is learned on first contact
        )
        daemon_a = pool.start("a", pre=("--config", str(config)))
        server = PeerId(parse_feed_id(a_id))

        async def strangers_then_friends() -> None:
            writers = []
            for n in range(6):  # 8 x (1 - 0.25): every slot a stranger may take
                source = f"127.0.2.{1 + n // 2}"
                _, writer = await stranger_session(
                    daemon_a.port, stranger(3000 + n), source, server
                )
                writers.append(writer)
            await asyncio.to_thread(pool.start, "b", "--peer", f"{daemon_a.address}{a_id}")
            await asyncio.to_thread(
                wait_for,
                "A to hold B's and C's posts",
                lambda: (len(pool.feed(a_data, b_id)) == len(pool.feed(a_data, c_id)) == 1) or None,
                60.0,
            )
            for writer in writers:
                assert not writer.transport.is_closing()  # the strangers kept their slots
                writer.close()

        asyncio.run(asyncio.wait_for(strangers_then_friends(), 120))
        assert f"refusing {b_id}" not in daemon_a.stderr()


def _holds(node: Node, feed: FeedId, seq: int) -> bool:
    return node.store.latest_seq(feed) == seq


def test_a_silent_link_does_not_keep_a_feed_from_a_peer_that_has_it() -> None:
    # A stranger that completes the handshake and never says HELLO was adopted as the
    # upstream of every feed the node names to it; a friend arriving with the entries then
    # waited out 2 x note_delay_s before the node asked it instead.
    from meshnode.sim.mesh import LinkSpec, Mesh
    from tests.fakes import everyone_follows

    for seed in range(3):
        mesh = Mesh(3, seed=seed)
        everyone_follows(mesh, 3)
        author = 0
        k, stranger = sorted((1, 2), key=mesh.feed)  # k leads: it names every feed at once
        for n in range(5):
            mesh.publish(author, f"n{n}")
        mesh.add_link(k, stranger, LinkSpec(latency_s=1e6))  # a word from it never arrives
        mesh.at(mesh.now + 5, lambda: None)  # the stranger holds its slot a while, silent
        mesh.run_until(lambda: False, mesh.now + 5)
        start = mesh.now
        mesh.add_link(author, k, LinkSpec(latency_s=0.05))  # RTT 0.1 s
        holds = functools.partial(_holds, mesh.node(k), mesh.feed(author), 5)
        assert mesh.run_until(holds, start + 30)
        assert mesh.now - start < 0.5, seed  # 2.1 s when the silent link kept the feeds

"""Two `meshnode run` daemons find each other by mDNS and sync, in a network namespace.

The namespace (made and deleted here, root only) holds just ``lo``, so no multicast
leaves it; the daemons announce and browse there exactly as on a LAN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.daemons import daemon_pool, wait_for
from tests.netns import netns_exec, network_namespace

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemons import DaemonPool

pytestmark = pytest.mark.integration

SYNC_TIMEOUT_S = 30.0


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def test_two_daemons_find_each_other_by_mdns_and_sync(pool: DaemonPool) -> None:
    a, a_id = pool.init("a")
    b, b_id = pool.init("b")
    _, c_id = pool.init("c", "--new-network")  # another network: seen, never dialed
    pool.ok(a, "follow", b_id)
    pool.ok(b, "follow", a_id)
    pool.ok(a, "post", "-", stdin="".join(f"hello {i}\n" for i in range(20)))
    with network_namespace("mn-mdns") as ns:
        wrap = netns_exec(ns)
        pool.start("a", wrap=wrap, mdns=True)
        pool.start("b", wrap=wrap, mdns=True)
        pool.start("c", wrap=wrap, mdns=True)
        wait_for(
            "B to hold A's posts",
            lambda: len(pool.feed(b, a_id)) == 21 or None,  # follow + 20 posts
            SYNC_TIMEOUT_S,
        )
        pool.ok(b, "post", "found you")
        wait_for("A to hold B's posts", lambda: len(pool.feed(a, b_id)) == 2 or None, 15)

        peers = pool.json(b, "peers")["peers"]
        assert isinstance(peers, list)
        by_id = {p["id"]: p for p in peers}
        assert by_id[a_id]["connected"] is True
        assert c_id not in by_id  # other networks are ignored by discovery
        assert by_id[a_id]["source"] == "mdns"
        assert str(by_id[a_id]["address"]).startswith("127.0.0.1:")
        pool.stop_all()
    for data in (a, b):
        assert pool.json(data, "check")["ok"] is True
    assert "handshake" not in pool.report()  # no dial across networks was even tried

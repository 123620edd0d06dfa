"""The box's operator: passphrase, sessions, box-wide hiding with its log, over real HTTP."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshnode.codec.content import ContactAction
from meshnode.core.memory_store import MemoryStore
from meshnode.core.node import Node
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from meshnode.web.operator import (
    LOGINS_PER_MINUTE,
    MAX_SESSIONS,
    Operator,
    PassphraseError,
    set_passphrase,
)
from meshnode.web.server import make_app
from tests.fakes import TS_MS, identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

BOX, ALICE = identity(1), identity(3)
PASSPHRASE = "the well is deep and cold"


def make_box() -> Node:
    node = Node(BOX, network_key=DEFAULT_NETWORK_KEY, store=MemoryStore(), rng=random.Random(1))
    node.set_contact(ContactAction.FOLLOW, ALICE.feed_id, timestamp_ms=TS_MS)
    for entry in make_chain(ALICE, 3):
        node.ingest(entry.raw)
    return node


def run(node: Node, data: Path, test: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        app, _ = make_app(node, box_name="Box", on_change=lambda: None, data_dir=data)
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


def test_the_passphrase_is_kept_as_an_argon2id_hash_only_its_owner_reads(tmp_path: Path) -> None:
    path = set_passphrase(tmp_path, PASSPHRASE)
    assert path.read_bytes().startswith(b"$argon2id$")
    assert PASSPHRASE.encode() not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(PassphraseError, match="at least 10"):
        set_passphrase(tmp_path, "short")


def test_an_operator_logs_in_sees_the_status_and_hides_a_feed(tmp_path: Path) -> None:
    set_passphrase(tmp_path, PASSPHRASE)
    node = make_box()
    alice = format_feed_id(ALICE.feed_id)

    async def test(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/api/operator/status")).status == 401
        wrong = await client.post("/api/operator/login", json={"passphrase": "not it at all"})
        assert wrong.status == 403
        right = await client.post("/api/operator/login", json={"passphrase": PASSPHRASE})
        assert right.status == 200
        cookie = right.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        status = await (await client.get("/api/operator/status")).json()
        assert status["id"] == format_feed_id(BOX.feed_id)
        people = (await (await client.get("/api/people")).json())["people"]
        assert alice in [p["id"] for p in people]
        hidden = await client.post("/api/operator/hide", json={"feed": alice})
        assert hidden.status == 200
        people = (await (await client.get("/api/people")).json())["people"]
        assert alice not in [p["id"] for p in people]  # the box no longer keeps or shows it
        log = (await (await client.get("/api/operator/log")).json())["log"]
        assert [(r["action"], r["feed"]) for r in log] == [("hide", alice)]
        own = await client.post("/api/operator/hide", json={"feed": format_feed_id(BOX.feed_id)})
        assert own.status == 400

    run(node, tmp_path, test)
    assert node.scope(ALICE.feed_id) is None
    assert (tmp_path / "web-operator.log").read_text().count('"hide"') == 1


def test_operator_requests_must_come_from_the_page_and_logins_are_slowed(tmp_path: Path) -> None:
    set_passphrase(tmp_path, PASSPHRASE)

    async def test(client: TestClient[Any, Any]) -> None:
        elsewhere = {"Origin": "http://evil.example"}
        response = await client.post(
            "/api/operator/login", json={"passphrase": PASSPHRASE}, headers=elsewhere
        )
        assert response.status == 403
        form = await client.post("/api/operator/login", data=f"passphrase={PASSPHRASE}")
        assert form.status == 415
        tries = [
            (await client.post("/api/operator/login", json={"passphrase": "wrong guess!"})).status
            for _ in range(LOGINS_PER_MINUTE + 2)
        ]
        assert tries[: LOGINS_PER_MINUTE - 2] == [403] * (LOGINS_PER_MINUTE - 2)
        assert tries[-1] == 429

    run(make_box(), tmp_path, test)


def test_without_a_passphrase_nobody_is_the_operator(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/operator/login", json={"passphrase": PASSPHRASE})
        assert response.status == 404
        assert "meshnode web passphrase" in await response.text()

    run(make_box(), tmp_path, test)


def test_sessions_are_bounded_and_expire(tmp_path: Path) -> None:
    set_passphrase(tmp_path, PASSPHRASE)
    now = [0.0]
    operator = Operator(make_box(), tmp_path, allow=lambda _: True, clock=lambda: now[0])

    async def logins() -> list[str]:
        return [await operator.login(PASSPHRASE, "a") for _ in range(MAX_SESSIONS + 3)]

    tokens = asyncio.run(logins())
    assert len(operator._sessions) == MAX_SESSIONS
    assert tokens[0] not in operator._sessions  # the oldest went first
    now[0] += 13 * 3600
    assert all(until < now[0] for until in operator._sessions.values())

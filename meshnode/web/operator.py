"""The box's operator: a passphrase (argon2id), sessions, and box-wide moderation with a log.

``meshnode web passphrase`` stores an argon2id hash in the data dir (``web-operator``,
mode 0600). The page logs in with the passphrase and gets a session cookie (HttpOnly,
SameSite=Strict, only for /api/operator); at most MAX_SESSIONS live at once and each lasts
SESSION_S. Logins are slowed per address (LOGINS_PER_MINUTE). Hiding a feed is a box-wide
block: the box publishes a BLOCK contact entry, so it stops keeping and carrying that feed
and the page stops showing it; every action is appended to ``web-operator.log`` (JSON
lines: time, action, feed, address) and shown to the operator.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import nacl.exceptions
import nacl.pwhash
from aiohttp import web

from meshnode.codec.content import ContactAction
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.secure.identity import format_feed_id, parse_feed_id
from meshnode.store.files import write_atomically

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from meshnode.core.node import Node

__all__ = [
    "COOKIE",
    "LOGINS_PER_MINUTE",
    "MAX_SESSIONS",
    "MIN_PASSPHRASE_CHARS",
    "SESSION_S",
    "Operator",
    "PassphraseError",
    "hash_passphrase",
    "set_passphrase",
]

PASSPHRASE_FILE = "web-operator"
LOG_FILE = "web-operator.log"
MIN_PASSPHRASE_CHARS = 10
MAX_SESSIONS = 16
SESSION_S = 12 * 3600.0
LOGINS_PER_MINUTE = 5
MAX_LOG_LINES_SHOWN = 200
COOKIE = "meshnode_operator"


class PassphraseError(MeshnodeError):
    """The passphrase is too short."""


def hash_passphrase(passphrase: str) -> bytes:
    """An argon2id hash (libsodium's interactive limits: 64 MiB, fine on a Pi)."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise PassphraseError(f"a passphrase has at least {MIN_PASSPHRASE_CHARS} characters")
    return bytes(
        nacl.pwhash.argon2id.str(
            passphrase.encode("utf-8"),
            opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
    )


def set_passphrase(data_dir: Path, passphrase: str) -> Path:
    """Store the operator's passphrase hash in ``data_dir``; returns the file."""
    path = data_dir / PASSPHRASE_FILE
    write_atomically(path, hash_passphrase(passphrase) + b"\n", mode=0o600)
    return path


class Operator:
    """Sessions, the login limiter and the moderation log of one box."""

    def __init__(
        self,
        node: Node,
        data_dir: Path | None,
        *,
        allow: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.data_dir = data_dir
        self.allow = allow  # a per-address limiter for login attempts
        self.clock = clock
        self._sessions: OrderedDict[str, float] = OrderedDict()

    def _hash(self) -> bytes | None:
        if self.data_dir is None:
            return None
        try:
            return (self.data_dir / PASSPHRASE_FILE).read_bytes().strip()
        except OSError:
            return None

    async def login(self, passphrase: str, client: str) -> str:
        """A new session token; HTTPForbidden on a wrong passphrase."""
        stored = self._hash()
        if stored is None:
            raise web.HTTPNotFound(text="no operator passphrase: run meshnode web passphrase")
        if not self.allow(client):
            raise web.HTTPTooManyRequests(text="too many logins from this address: wait a minute")
        ok = await asyncio.get_running_loop().run_in_executor(None, _verify, stored, passphrase)
        if not ok:
            raise web.HTTPForbidden(text="wrong passphrase")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = self.clock() + SESSION_S
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def check(self, request: web.Request) -> None:
        """HTTPUnauthorized unless the request carries a live session."""
        token = request.cookies.get(COOKIE, "")
        until = self._sessions.get(token)
        if until is None or until < self.clock():
            self._sessions.pop(token, None)
            raise web.HTTPUnauthorized(text="log in as the box's operator first")

    def hide(self, feed_text: str, client: str) -> dict[str, object]:
        """Block a feed box-wide and log it."""
        try:
            feed = parse_feed_id(feed_text)
        except DecodeError as exc:
            raise web.HTTPBadRequest(text=f"feed: {exc}") from None
        if feed == self.node.feed_id:
            raise web.HTTPBadRequest(text="the box cannot hide its own feed")
        self.node.set_contact(ContactAction.BLOCK, feed, timestamp_ms=time.time_ns() // 1_000_000)
        self.node.flush()
        record = {"time_ms": time.time_ns() // 1_000_000, "action": "hide"}
        record.update(feed=format_feed_id(feed), address=client)
        self._log(record)
        return record

    def _log(self, record: dict[str, object]) -> None:
        if self.data_dir is None:
            return
        with (self.data_dir / LOG_FILE).open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def log(self) -> list[object]:
        """The newest MAX_LOG_LINES_SHOWN actions, oldest first."""
        if self.data_dir is None:
            return []
        try:
            lines = (self.data_dir / LOG_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out: list[object] = []
        for line in lines[-MAX_LOG_LINES_SHOWN:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a power cut
        return out


def _verify(stored: bytes, passphrase: str) -> bool:
    try:
        return bool(nacl.pwhash.verify(stored, passphrase.encode("utf-8")))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False

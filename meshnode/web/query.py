"""Strict parsing of the API's query values: a bad one is a 400 that names it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from meshnode.errors import DecodeError
from meshnode.secure.identity import parse_feed_id

if TYPE_CHECKING:
    from meshnode.types import FeedId

__all__ = ["query_feed", "query_int"]


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """The whole number ``name`` of the query, ``default`` when absent, within lo..hi."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be between {lo} and {hi}")
    return value


def query_feed(request: web.Request, name: str = "feed") -> FeedId:
    """The feed id ``name`` of the query."""
    try:
        # A "+" of the base64 id sent unescaped arrives as a space; an id has no spaces.
        return parse_feed_id(request.query.get(name, "").replace(" ", "+"))
    except DecodeError as exc:
        raise web.HTTPBadRequest(text=f"{name}: {exc}") from None

"""What reaches a terminal: text from others with its control characters made visible.

Entry text, names and anything else a stranger wrote may hold escape sequences (cursor
moves, a window title, an OSC 52 clipboard write), bidi overrides that reorder what is
shown (Trojan Source), or line separators. Nothing meshnode prints passes them on:

* ``visible(text)`` is one field in a one-line view: every C0 and C1 control, DEL and
  newline becomes ``\\x1b``-style, bidi controls and line separators ``\\u202e``-style,
  and a backslash that would read as one of those is doubled, so the visible form reads
  back to the exact text (``read_visible``).
* ``one_line(text)`` is a log line or an error: the same escapes, backslashes left as
  they are (a repr in a log line stays readable).
* ``VisibleStream`` wraps the CLI's stdout: the same escapes on everything printed,
  newlines kept; the last guard for output that does not call ``visible``.
* ``json_text(value)`` is JSON whose strings escape those characters too (as ``\\u009b``):
  json.dumps escapes only U+0000-U+001F.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["VisibleStream", "json_text", "one_line", "read_visible", "visible"]

# Trojan Source's (CVE-2021-42574) embeddings, overrides and isolates; U+2028/U+2029
# start a new line in some viewers; lone surrogates cannot even be encoded.
_UNSEEN = "\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
_CONTROLS = "\x00-\x1f\x7f-\x9f"
_UNSAFE_IN_LINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_UNSEEN}]")  # keeps \n
_UNSAFE = f"{_CONTROLS}{_UNSEEN}"
_UNSAFE_IN_ONE_LINE = re.compile(f"[{_UNSAFE}]")
# A backslash before x, u, another backslash or an escaped character would read as an escape.
_FIELD = re.compile(f"\\\\(?=[xu\\\\{_UNSAFE}])|[{_UNSAFE}]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape_field(match: re.Match[str]) -> str:
    return "\\\\" if match.group() == "\\" else _escape(match)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def visible(text: str) -> str:
    """``text`` for one line of a terminal: controls, newlines and bidi controls escaped."""
    return _FIELD.sub(_escape_field, text)


def one_line(text: str) -> str:
    """``text`` as one line of a log or an error: controls, newlines and bidi escaped."""
    return _UNSAFE_IN_ONE_LINE.sub(_escape, text)


def read_visible(shown: str) -> str:
    """The text ``visible`` was given (its inverse)."""

    def unescape(match: re.Match[str]) -> str:
        body = match.group(1)
        return "\\" if body == "\\" else chr(int(body[1:], 16))

    return _ESCAPE.sub(unescape, shown)


def json_text(value: object) -> str:
    """``value`` as one line of JSON with no control or bidi character left raw."""
    return _UNSAFE_IN_LINES.sub(_json_escape, json.dumps(value, ensure_ascii=False))


class VisibleStream:
    """A text stream that writes to ``inner`` with unsafe characters escaped, newlines kept."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        """Write ``text`` made visible; returns the length given, as a text stream does."""
        self.inner.write(_UNSAFE_IN_LINES.sub(_escape, text))
        return len(text)

    def flush(self) -> None:
        """Flush the inner stream."""
        self.inner.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

"""A followed author's text reaches the terminal shown, never obeyed.

An author may post escape sequences (a window title, OSC 52 clipboard writes, cursor
moves, a cleared screen), C1 controls, DEL and bidi overrides, as text or as a name.
Human output shows each as a visible escape; --json stays exact and stays escaped.
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st

from meshnode.cli.terminal import VisibleStream, json_text, one_line, read_visible, visible
from meshnode.codec.bundle import encode_bundle
from meshnode.codec.content import About, Reply, encode_about, encode_reply
from meshnode.codec.message import ContentType, create_entry
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id
from meshnode.types import Seq
from tests.fakes import TS_MS, identity

if TYPE_CHECKING:
    from pathlib import Path

    from meshnode.types import MsgId
    from tests.unit.test_cli import Cli

MALLORY = identity(66)
MALLORY_ID = format_feed_id(MALLORY.feed_id)
# What a terminal would obey: C0 (newline too, in a one-line view), DEL, C1, bidi
# embeddings, overrides and isolates, line and paragraph separators, lone surrogates.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
UNSAFE_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)
ATTACKS = [
    "\x1b]0;pwned\x07title",  # window title
    "\x1b]52;c;cm0gLXJmIH4K\x07clip",  # OSC 52: write the clipboard
    "\x1b[2J\x1b[Hcleared",  # clear the screen, cursor home
    "\x9b31mred",  # C1 CSI
    "rate \u202egnp.exe",  # Trojan Source: right-to-left override
    "del\x7fete\rover\ttab",
    "two\nlines\u2028three",
]


def _entries(texts: list[str], *, name: str) -> list[bytes]:
    """Mallory's feed: an ABOUT with ``name``, then each text as a post, then a reply."""
    contents = [(ContentType.ABOUT, encode_about(About(name=name, description="a\x1b[8mb")))]
    contents += [(ContentType.POST, t.encode()) for t in texts]
    raws: list[bytes] = []
    previous: MsgId | None = None
    for seq, (kind, content) in enumerate(contents, 1):
        entry = create_entry(
            MALLORY,
            DEFAULT_NETWORK_KEY,
            seq=Seq(seq),
            previous=previous,
            timestamp_ms=TS_MS + seq,
            content_type=kind,
            content=content,
        )
        raws.append(entry.raw)
        previous = entry.id
    assert previous is not None
    reply = create_entry(
        MALLORY,
        DEFAULT_NETWORK_KEY,
        seq=Seq(len(raws) + 1),
        previous=previous,
        timestamp_ms=TS_MS + 99,
        content_type=ContentType.REPLY,
        content=encode_reply(Reply(parent=previous, text="re: \x1b[1Abold")),
    )
    return [*raws, reply.raw]


def _follow_mallory(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    assert cli("follow", MALLORY_ID).code == 0
    bundle = home / "mallory.bundle"
    raws = _entries(ATTACKS, name="M\x1b]0;x\x07\u202e")
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, raws))
    assert cli("import", str(bundle), "--json").json()["added"] == len(raws)


def test_feed_shows_escape_sequences_instead_of_obeying_them(cli: Cli, home: Path) -> None:
    _follow_mallory(cli, home)
    result = cli("feed", MALLORY_ID)
    assert result.code == 0
    assert not UNSAFE_BUT_NEWLINE.search(result.out), ascii(result.out)
    lines = result.out.splitlines()
    assert len(lines) == 1 + len(ATTACKS) + 1  # one line per entry, whatever the text
    assert r"\x1b]52;c;cm0gLXJmIH4K\x07clip" in result.out
    assert r"rate \u202egnp.exe" in result.out
    assert r"\x9b31mred" in result.out
    assert r"del\x7fete over\x09tab" in result.out  # \r ends a line too
    assert "two lines three" in result.out  # a one-line view joins the lines
    assert r"[about] M\x1b]0;x\x07\u202e: a\x1b[8mb" in lines[0]
    assert r"[reply] re: \x1b[1Abold" in lines[-1]


def test_timeline_shows_them_too(cli: Cli, home: Path) -> None:
    _follow_mallory(cli, home)
    result = cli("timeline", "--limit", "100")
    assert result.code == 0
    assert not UNSAFE_BUT_NEWLINE.search(result.out), ascii(result.out)
    assert r"\x1b]0;pwned\x07title" in result.out


def test_json_output_is_exact_and_escaped(cli: Cli, home: Path) -> None:
    _follow_mallory(cli, home)
    for argv in (("feed", MALLORY_ID, "--json"), ("timeline", "--limit", "100", "--json")):
        result = cli(*argv)
        assert result.code == 0
        assert not UNSAFE_BUT_NEWLINE.search(result.out), ascii(result.out)
        texts = {json.dumps(line) for line in result.json_lines()}
        for attack in ATTACKS:
            assert any(json.dumps(attack)[1:-1] in t for t in texts), attack


def test_anything_printed_is_made_visible(cli: Cli, home: Path) -> None:
    """Output that does not escape a field itself still never carries a control."""
    assert cli("init").code == 0
    result = cli("about", "--name", "\x1b]0;mine\x07\u202e")
    assert result.code == 0
    assert not UNSAFE_BUT_NEWLINE.search(result.out), ascii(result.out)
    assert r"\x1b]0;mine\x07\u202e" in result.out


def test_errors_and_log_lines_are_one_visible_line(cli: Cli, home: Path) -> None:
    weird = home / "x\x1b]0;t\x07\ny.toml"
    result = cli("--config", str(weird), "whoami")
    assert result.code == 78
    assert result.err.count("\n") == 1
    assert not UNSAFE_BUT_NEWLINE.search(result.err), ascii(result.err)
    assert r"x\x1b]0;t\x07\x0ay.toml" in result.err


# -- the escaping itself, over any text ---------------------------------------------------


@given(st.text())
def test_visible_leaves_no_control_and_reads_back(text: str) -> None:
    shown = visible(text)
    assert not UNSAFE.search(shown)
    assert read_visible(shown) == text


@given(
    st.text(
        st.characters(
            blacklist_categories=("Cc", "Cs"),
            blacklist_characters="\\\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029",
        )
    )
)
def test_visible_keeps_ordinary_text_as_it_is(text: str) -> None:
    assert visible(text) == text


def test_a_lone_backslash_stays_and_one_that_would_read_as_an_escape_is_doubled() -> None:
    assert visible("¯\\_(ツ)_/¯") == "¯\\_(ツ)_/¯"
    assert visible("\\x1b") == "\\\\x1b"
    assert visible("\\\x1b") == "\\\\\\x1b"
    assert read_visible(visible("\\x1b")) == "\\x1b"


@given(st.text())
def test_the_output_stream_keeps_newlines_and_nothing_else(text: str) -> None:
    out = io.StringIO()
    stream = VisibleStream(out)
    assert stream.write(text) == len(text)
    assert not UNSAFE_BUT_NEWLINE.search(out.getvalue())
    assert out.getvalue().count("\n") == text.count("\n")


@given(st.text())
def test_one_line_is_one_line(text: str) -> None:
    assert not UNSAFE.search(one_line(text))


@given(
    st.recursive(
        st.none() | st.text(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids)
    )
)
def test_json_text_round_trips_with_no_raw_control(value: object) -> None:
    text = json_text(value)
    assert not UNSAFE.search(text)
    assert json.loads(text) == value

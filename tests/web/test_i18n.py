"""Every word the page shows comes from its catalogue, and every catalogue has them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "meshnode" / "web" / "static"
CATALOGUES = sorted((STATIC / "i18n").glob("*.json"))
KEY = re.compile(r'"((?:title)|(?:[a-z]+(?:\.[a-z_]+)+))"')
MARKED = re.compile(r'data-i18n(?:-label|-alt)?="([^"]+)"')


def _used() -> set[str]:
    keys = set(MARKED.findall((STATIC / "index.html").read_text(encoding="utf-8")))
    for script in ("app.js", "backup.js", "inbox.js"):
        source = (STATIC / script).read_text(encoding="utf-8")
        keys |= {k for k in KEY.findall(source) if not k.startswith(("meshnode.", "api."))}
    # tn("a.b", count) uses the plural forms "a.b.one", "a.b.other", ...: not "a.b" itself
    return {k for k in keys if f"{k}.other" not in keys}


def test_english_is_there_and_the_page_lists_it() -> None:
    assert STATIC / "i18n" / "en.json" in CATALOGUES
    shipped = re.search(r"LANGUAGES = \[([^\]]*)\]", (STATIC / "i18n.js").read_text())
    assert shipped is not None
    assert sorted(re.findall(r'"(\w+)"', shipped.group(1))) == sorted(p.stem for p in CATALOGUES)


def test_every_word_used_is_in_every_catalogue_and_none_is_left_over() -> None:
    used = _used()
    assert "status.connected" in used  # the scan finds keys at all
    for catalogue in CATALOGUES:
        words = json.loads(catalogue.read_text(encoding="utf-8"))
        assert set(words) == used, catalogue.name
        assert all(isinstance(v, str) and v.strip() for v in words.values()), catalogue.name


PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_catalogue_keeps_the_english_placeholders_and_order() -> None:
    english = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
    assert {"fr.json", "es.json"} <= {p.name for p in CATALOGUES}
    for catalogue in CATALOGUES:
        words = json.loads(catalogue.read_text(encoding="utf-8"))
        assert list(words) == list(english), catalogue.name  # same order: easier to review
        for key, text in english.items():
            # a lost {name} shows nothing; a misspelt one shows "{nmae}" to the villager
            found = sorted(PLACEHOLDER.findall(words[key]))
            assert found == sorted(PLACEHOLDER.findall(text)), f"{catalogue.name}: {key}"

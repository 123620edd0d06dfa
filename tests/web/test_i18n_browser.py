"""The page speaks the browser's language: French and Spanish catalogues, English otherwise.

Each case is a fresh headless Chromium whose languages are set (``--lang`` and the
``intl.accept_languages`` setting, which give ``navigator.languages``), opening the page of
a real `meshnode run`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.daemons import daemon_pool, wait_for
from tests.web.conftest import STATIC, _chromium
from tests.web.test_page_browser import WAIT_S, _text, page_url

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# the browser's languages -> the catalogue the page must pick
CASES = {
    "fr-FR,fr": "fr",
    "es-MX,es": "es",
    "de-DE,de": "en",  # no German catalogue: English
}

# tn() in the page, through the same module instance app.js loaded its words into
PLURALS = """
const done = arguments[arguments.length - 1];
import("/static/i18n.js").then(
  (m) => done([1, 2, 1000000].map((n) => m.tn("timeline.replies", n))),
  (error) => done(String(error)),
);
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with daemon_pool() as pool:
        pool.init("a")
        yield page_url(pool.start("a"))


def _words(language: str) -> dict[str, str]:
    words: dict[str, str] = json.loads(
        (STATIC / "i18n" / f"{language}.json").read_text(encoding="utf-8")
    )
    return words


@pytest.mark.parametrize(("accept", "language"), list(CASES.items()))
def test_the_page_picks_the_browsers_language(url: str, accept: str, language: str) -> None:
    words = _words(language)
    first = accept.split(",")[0]
    with _chromium(f"--lang={first}", prefs={"intl.accept_languages": accept}) as browser:
        browser.get(url)
        assert browser.execute_script("return navigator.languages")[0] == first
        wait_for(  # set only after the catalogue is in and the box answered
            "the page to reach the box",
            lambda: _text(browser, "box-status") == words["status.connected"] or None,
            WAIT_S,
        )
        assert browser.execute_script("return document.documentElement.lang") == language
        assert _text(browser, "send") == words["compose.send"]
        assert _text(browser, "timeline-title") == words["timeline.title"]
        label = browser.execute_script("return document.getElementById('backup-qr').alt")
        assert label == words["backup.qr"]
        one, two, million = browser.execute_async_script(PLURALS)
        assert one == words["timeline.replies.one"].replace("{count}", "1")
        assert two == words["timeline.replies.other"].replace("{count}", "2")
        # French CLDR says "many" for a million: no such key, so tn() falls back to .other
        assert million == words["timeline.replies.other"].replace("{count}", "1000000")

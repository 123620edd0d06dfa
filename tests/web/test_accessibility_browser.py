"""A screen reader's and a keyboard's view of the page, audited in headless Chromium.

The page is filled as people use it (posts, a reply, people to follow, the operator logged
in, a thread open) and then checked, in the light and the dark colour scheme, for what
WCAG 2.2 level AA asks that a program can see: a language, a name for every control,
image and link, headings in order, no focus traps or jumps, a visible focus ring, text
contrast of at least 4.5:1 (3:1 for large text) and touch targets of at least 24 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemons import DaemonPool, daemon_pool, wait_for
from tests.web.test_page_browser import (
    WAIT_S,
    _click,
    _count,
    _fill,
    _post,
    _wait_connected,
    page_url,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Runs in the page; returns a list of problems, each a short text naming the element.
AUDIT = (Path(__file__).parent / "audit.js").read_text(encoding="utf-8")

FOCUS = r"""
const el = document.activeElement;
const style = getComputedStyle(el);
const ring = parseFloat(style.outlineWidth) > 0 && style.outlineStyle !== "none";
const box = el.getBoundingClientRect();
return {
  id: el.id || el.tagName.toLowerCase() + ":" + el.textContent.trim().slice(0, 20),
  ring: ring || style.boxShadow !== "none",
  visible: box.width > 0 && box.height > 0,
  order: [...document.querySelectorAll("*")].indexOf(el),
};
"""


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _filled_page(browser: WebDriver, pool: DaemonPool) -> None:
    a, _ = pool.init("a")
    b, b_id = pool.init("b")
    pool.ok(b, "about", "--name", "Baker")
    pool.ok(b, "post", "bread on Tuesday")
    pool.ok(a, "follow", b_id)
    pool.ok(a, "post", "the well is fixed")
    assert pool.cli(a, "web", "passphrase", stdin="a long operator passphrase\n").returncode == 0
    daemon_b = pool.start("b")
    daemon_a = pool.start("a", "--peer", daemon_b.address)
    wait_for("A to hold B's post", lambda: len(pool.feed(a, b_id)) == 2 or None, WAIT_S)
    browser.get(page_url(daemon_a))
    _wait_connected(browser)
    wait_for("the posts", lambda: _count(browser, "#timeline .reply") >= 2 or None, WAIT_S)
    _click(browser, "#timeline .reply")
    _post(browser, "thank you")
    wait_for("the reply", lambda: _count(browser, "#timeline .reply") >= 3 or None, WAIT_S)
    _click(browser, "#operator summary")
    _fill(browser, "passphrase", "a long operator passphrase")
    _click(browser, "#operator-login button")
    wait_for("the operator's view", lambda: _count(browser, "#operator-peers li") or None, WAIT_S)
    _click(browser, "#backup summary")
    wait_for("the backup words", lambda: _count(browser, "#backup-words li") == 24 or None, WAIT_S)


def _scheme(browser: WebDriver, scheme: str) -> None:
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def test_the_page_passes_an_accessibility_audit_in_light_and_dark(
    browser: WebDriver, pool: DaemonPool
) -> None:
    _filled_page(browser, pool)
    try:
        for scheme in ("light", "dark"):
            _scheme(browser, scheme)
            assert browser.execute_script(AUDIT) == [], scheme
        # A thread stands alone: its view is audited too.
        _click(browser, "#timeline a.thread")
        wait_for("the thread", lambda: _count(browser, "#view-list li") or None, WAIT_S)
        for scheme in ("light", "dark"):
            _scheme(browser, scheme)
            assert browser.execute_script(AUDIT) == [], f"thread, {scheme}"
        # The audit sees faults: an unlabelled field and grey on grey.
        browser.execute_script(
            "const i = document.createElement('input'); i.id = 'bad-field';"
            "const p = document.createElement('p'); p.id = 'bad-text'; p.textContent = 'faint';"
            "p.style.color = '#999'; p.style.background = '#aaa';"
            "document.querySelector('#view').append(i, p);"
        )
        found = browser.execute_script(AUDIT)
        assert any(p.startswith("unlabelled #bad-field") for p in found), found
        assert any(p.startswith("contrast") and "#bad-text" in p for p in found), found
    finally:
        _scheme(browser, "light")


def test_the_keyboard_reaches_every_control_in_reading_order_with_a_visible_ring(
    browser: WebDriver, pool: DaemonPool
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _filled_page(browser, pool)
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    stops: list[dict[str, Any]] = []
    for _ in range(200):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        here = browser.execute_script(FOCUS)
        if stops and here["order"] <= stops[-1]["order"]:
            break  # wrapped round to the top: every stop seen
        stops.append(here)
    ids = [s["id"] for s in stops]
    for wanted in ("name", "description", "text", "send", "operator-title", "view-back"):
        assert (wanted in ids) is (wanted != "view-back"), ids  # the hidden view is skipped
    assert [s for s in stops if not s["ring"] or not s["visible"]] == []
    assert len(stops) >= 15, ids  # the posts' own buttons and links are stops too

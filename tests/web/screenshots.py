"""Make the page's screenshots in docs/ from a small village of real daemons.

    python -m tests.web.screenshots [FOLDER]      (default: docs/)

Three boxes' worth of people post, answer and name themselves; one phone-sized headless
Chromium opens the page of the "North Village" box and photographs the main page, a
thread, a person's page, the backup, the operator's view, and the private messages (the
inbox, and a conversation with Amina). Needs chromium and chromium-driver (as the browser
tests do).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.daemons import DaemonPool, daemon_pool, wait_for
from tests.web.conftest import _chromium

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20.0
PASSPHRASE = "a long operator passphrase"


def _q(selector: str) -> str:
    return f"document.querySelector({selector!r})"


def _count(selector: str) -> str:
    return f"document.querySelectorAll({selector!r}).length"


def _set(browser: WebDriver, selector: str, value: str) -> None:
    browser.execute_script(f"{_q(selector)}.value = arguments[0]", value)


def _run(browser: WebDriver, script: str) -> object:
    return browser.execute_script(script)


def _until(browser: WebDriver, what: str, script: str) -> None:
    wait_for(what, lambda: _run(browser, script) or None, WAIT_S)


def _shoot(browser: WebDriver, folder: Path, name: str, height: int) -> None:
    # The viewport's height decides how much of the page one picture holds.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": height, "deviceScaleFactor": 2, "mobile": True},
    )
    if not browser.save_screenshot(str(folder / name)):
        raise SystemExit(f"could not write {folder / name}")
    print(folder / name)


def _wait_held(pool: DaemonPool, box: Path, feed: str) -> None:
    # A name and a post (and the key for private messages each daemon publishes).
    wait_for("the village on the box", lambda: len(pool.feed(box, feed)) >= 2 or None, 30)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with daemon_pool() as pool, _chromium() as browser:
        box, _ = pool.init("box")
        amina, amina_id = pool.init("amina")
        tomas, tomas_id = pool.init("tomas")
        pool.ok(amina, "about", "--name", "Amina", "--description", "Baker by the mill")
        pool.ok(tomas, "about", "--name", "Tomás", "--description", "Keeps the water pump")
        pool.ok(tomas, "post", "The pump is fixed. Water from 7 until noon.")
        pool.ok(amina, "post", "Bread on Tuesday: who needs a loaf?")
        for person in (amina, tomas):
            pool.ok(person, "keys", "publish")  # so that the page can write to them privately
        for who in (amina_id, tomas_id):
            pool.ok(box, "follow", who)
        pool.ok(box, "about", "--name", "North Village", "--description", "The box in the hall")
        assert pool.cli(box, "web", "passphrase", stdin=PASSPHRASE + "\n").returncode == 0
        peers = [pool.start("amina"), pool.start("tomas")]
        daemon = pool.start("box", *(a for p in peers for a in ("--peer", p.address)))
        for who in (amina_id, tomas_id):
            _wait_held(pool, box, who)
        port = re.search(r"page on http://127\.0\.0\.1:(\d+)/", daemon.stderr())
        assert port is not None
        browser.get(f"http://127.0.0.1:{port.group(1)}/")
        _until(browser, "the page", f"return {_count('#timeline li')} > 3")
        # This phone's person names themselves and answers Amina.
        _set(browser, "#name", "Lea")
        _run(browser, f"{_q('#about button')}.click()")
        post = "[...document.querySelectorAll('#timeline li')].find(l => /Bread/.test(l.innerText))"
        _until(browser, "Amina's post", f"return {post}")
        _run(browser, f"{post}.querySelector('.reply').click()")
        _set(browser, "#text", "Two, please! I can bring eggs.")
        _run(browser, f"{_q('#send')}.click()")
        _until(browser, "the reply", "return document.body.textContent.includes('1 reply')")
        _set(browser, "#text", "Seeds to share: beans and squash.")
        _run(browser, f"{_q('#text')}.dispatchEvent(new Event('input')); window.scrollTo(0, 0)")
        _shoot(browser, folder, "page-phone.png", 1400)
        _run(browser, f"{post}.querySelector('a.thread').click()")
        _until(browser, "the thread", f"return {_count('#view-list li')} == 2")
        _shoot(browser, folder, "page-thread.png", 760)
        _run(browser, f"{_q('#view-list .meta a')}.click()")
        _until(browser, "Amina's page", f"return /Baker/.test({_q('#view-about')}.textContent)")
        _shoot(browser, folder, "page-person.png", 760)
        _run(browser, f"location.hash = ''; {_q('#backup')}.open = true")
        _until(browser, "the words", f"return {_count('#backup-words li')} == 24")
        _run(browser, f"{_q('#backup')}.scrollIntoView()")
        _shoot(browser, folder, "page-backup.png", 1100)
        _run(browser, f"{_q('#backup')}.open = false; {_q('#operator')}.open = true")
        _set(browser, "#passphrase", PASSPHRASE)
        _run(browser, f"{_q('#operator-login button')}.click()")
        _until(browser, "the operator's view", f"return {_count('#operator-peers li')} == 2")
        _run(browser, f"{_q('#operator')}.scrollIntoView()")
        _shoot(browser, folder, "page-operator.png", 1000)
        _private_messages(browser, pool, folder, amina)


def _private_messages(browser: WebDriver, pool: DaemonPool, folder: Path, amina: Path) -> None:
    """Lea writes to Amina, Amina answers from her own node: the inbox and the conversation."""
    _run(browser, "location.hash = '#inbox'")
    people = "#dm-people input"
    _until(browser, "people with a key", f"return {_count(people)} >= 2")
    lea = str(_run(browser, f"return {_q('#me-id')}.textContent"))
    _run(
        browser,
        "[...document.querySelectorAll('#dm-people label')]"
        ".find(l => l.textContent === 'Amina').querySelector('input').click()",
    )
    _set(browser, "#dm-text", "Can I pick the bread up at five?")
    _run(browser, f"{_q('#dm-send')}.click()")
    _until(browser, "the conversation", f"return {_count('#dm-list li')} == 1")
    pool.ok(amina, "follow", lea)  # Amina's node fetches Lea's feed, and so her key
    wait_for(
        "Lea's key at Amina's",
        lambda: any(e["type"] == "enckey" for e in pool.feed(amina, lea)) or None,
        30,
    )
    pool.ok(amina, "dm", lea, "Yes! I keep two loaves for you.")
    _until(browser, "Amina's answer", f"return {_count('#dm-list li')} == 2")
    _until(browser, "the delivery", "return /At Amina/.test(document.body.textContent)")
    _shoot(browser, folder, "page-private.png", 760)
    _run(browser, "location.hash = '#inbox'")
    _until(browser, "the inbox", f"return {_count('#conversations li')} == 1")
    _shoot(browser, folder, "page-inbox.png", 1000)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")

"""The page over HTTPS in headless Chromium: a secure context, whose service worker keeps it.

The daemon serves a self-signed certificate for ``village.test`` (a name the browser alone
resolves to 127.0.0.1), so the page is a secure context only because of HTTPS, as for a
box whose community installed its own certificate authority on the phones.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.daemons import daemon_pool, wait_for
from tests.web.conftest import LAN_NAME, self_signed

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.chrome.webdriver import WebDriver

    from tests.daemons import Daemon, DaemonPool

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WAIT_S = 20.0
CONNECTED = "Connected to the box."
AWAY = "The box is out of reach; retrying…"


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _page_port(daemon: Daemon, scheme: str) -> str:
    pattern = re.compile(rf"page on {scheme}://127\.0\.0\.1:(\d+)/")

    def probe() -> str | None:
        match = pattern.search(daemon.stderr())
        return match.group(1) if match else None

    return wait_for("the page to listen", probe, 10.0)


def _until(browser: WebDriver, what: str, script: str) -> object:
    """Poll ``script`` in the page until it returns something truthy (bounded)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(
            lambda driver: driver.execute_script(script)
        )
    except TimeoutException:
        pytest.fail(f"timed out after {WAIT_S:g} s waiting for {what}")


def _wait_status(browser: WebDriver, what: str, text: str) -> None:
    script = f"return document.getElementById('box-status')?.textContent === {text!r}"
    _until(browser, what, script)


def _text(browser: WebDriver, element_id: str) -> str:
    script = f"return document.getElementById({element_id!r})?.textContent ?? null"
    return str(browser.execute_script(script))


def test_over_https_the_page_opens_from_its_service_worker_with_no_box(
    tls_browser: WebDriver, pool: DaemonPool
) -> None:
    pool.init("a")
    self_signed(pool.root, LAN_NAME, "localhost")
    config = pool.root / "https.toml"  # the paths are taken from the config file's folder
    config.write_text('[web]\nbox_name = "North"\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    daemon = pool.start("a", pre=("--config", str(config)))
    tls_browser.get(f"https://{LAN_NAME}:{_page_port(daemon, 'https')}/")
    _wait_status(tls_browser, "the page to reach the box", CONNECTED)
    assert tls_browser.execute_script("return window.isSecureContext") is True
    assert _text(tls_browser, "box-name") == "North"
    me = _text(tls_browser, "me-id")
    controlled = "return Boolean(navigator.serviceWorker.controller)"
    _until(tls_browser, "the service worker to control the page", controlled)
    tls_browser.refresh()  # now the page's own request goes through the worker too
    _until(tls_browser, "the worker after a reload", controlled)
    _wait_status(tls_browser, "the page to reach the box again", CONNECTED)

    assert pool.daemons == [daemon]
    assert daemon.terminate() == 0  # by its pid
    tls_browser.refresh()
    _wait_status(tls_browser, "the page, from the worker, to say the box is away", AWAY)
    assert tls_browser.execute_script("return document.querySelector('#compose #send') !== null")
    assert _text(tls_browser, "me-id") == me  # the key, kept in this browser
    assert tls_browser.execute_script("return document.documentElement.lang") == "en"
    assert tls_browser.execute_script(controlled) is True


def test_over_plain_http_at_a_lan_name_no_service_worker_registers(
    browser: WebDriver, pool: DaemonPool
) -> None:
    pool.init("a")
    daemon = pool.start("a")
    browser.get(f"http://{LAN_NAME}:{_page_port(daemon, 'http')}/")
    _wait_status(browser, "the page to reach the box", CONNECTED)
    _until(browser, "the load event", "return document.readyState === 'complete'")
    assert browser.execute_script("return window.isSecureContext") is False
    assert browser.execute_script("return 'serviceWorker' in navigator") is False
    assert _text(browser, "box-status") == CONNECTED  # the page works as it did

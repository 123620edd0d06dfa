"""The page's JavaScript in a real browser: headless Chromium (selenium) and a static server.

The server is a throwaway ``http.server`` on 127.0.0.1 that serves ``meshnode/web/static/``
at ``/static/``, this folder at ``/test/`` and ``tests/vectors/`` at ``/vectors/``. Each page
is opened from two origins: ``http://127.0.0.1`` (loopback, a secure context, WebCrypto
present) and ``http://village.test``, a name the browser alone resolves to 127.0.0.1
(``--host-resolver-rules``), which, like a box's LAN address, is not a secure context, so
WebCrypto is absent there. No network configuration changes. Without selenium, chromium or
chromedriver the browser tests skip and say which is missing. For HTTPS, ``self_signed``
makes a certificate with the ``openssl`` command, and ``tls_browser`` is a Chromium of its
own that accepts it.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = [
    "ORIGINS",
    "VectorsPage",
    "browser",
    "self_signed",
    "static_server",
    "tls_browser",
    "vectors_page",
]

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "meshnode" / "web" / "static"
ROUTES = {
    "/static/": STATIC,
    "/test/": Path(__file__).parent,
    "/vectors/": ROOT / "tests" / "vectors",
}
LAN_NAME = "village.test"  # RFC 6761 reserves .test; only the browser under test resolves it
WINDOW = (360, 740)  # a phone's viewport, in CSS pixels
PAGE_TIMEOUT_S = 15.0
POLL_S = 0.01
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in CI containers
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",  # the page's viewport is set by mobileEmulation
    f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1",
)


class _RoutedHandler(http.server.SimpleHTTPRequestHandler):
    """Serves each route's folder; everything else is 404."""

    extensions_map = {  # noqa: RUF012 (the base class declares it a plain dict)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".json": "application/json",
    }

    def translate_path(self, path: str) -> str:
        url_path = urllib.parse.urlsplit(path).path
        for prefix, folder in ROUTES.items():
            if url_path.startswith(prefix):
                self.directory = str(folder)
                return super().translate_path("/" + url_path.removeprefix(prefix))
        return str(ROOT / "no-such-route")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a request log would only bury the test's own output."""


@pytest.fixture(scope="session")
def static_server() -> Iterator[int]:
    """Port of the throwaway server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RoutedHandler)
    thread = threading.Thread(target=server.serve_forever, name="static-server", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _browser_binaries() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or skip the test saying which is missing."""
    found = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(
            f"browser test: {' and '.join(missing)} not installed (apt: chromium chromium-driver)"
        )
    return str(found["chromium"]), str(found["chromedriver"])


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless, phone-sized Chromium for the session."""
    with _chromium() as driver:
        yield driver


@pytest.fixture
def tls_browser() -> Iterator[WebDriver]:
    """A fresh Chromium (no service worker, no cache) that accepts self-signed certificates."""
    with _chromium("--ignore-certificate-errors") as driver:
        yield driver


@contextlib.contextmanager
def _chromium(*extra: str, prefs: dict[str, Any] | None = None) -> Iterator[WebDriver]:
    """A headless phone-sized Chromium with ``extra`` arguments and ``prefs`` (its settings)."""
    pytest.importorskip("selenium", reason="browser test: selenium not installed (test extras)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (*CHROME_ARGS, *extra):
        options.add_argument(argument)
    # A desktop window is at least 500 pixels wide; emulation gives the phone's viewport.
    metrics = {"width": WINDOW[0], "height": WINDOW[1], "pixelRatio": 2.0}
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    if prefs:
        options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def self_signed(folder: Path, *names: str) -> tuple[Path, Path]:
    """A one-day self-signed P-256 certificate for 127.0.0.1 and ``names``, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("HTTPS test: the openssl command is not installed (apt: openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    alt = ",".join([*(f"DNS:{name}" for name in names), "IP:127.0.0.1"])
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    command += ["-nodes", "-days", "1", "-subj", "/CN=localhost"]
    command += ["-addext", f"subjectAltName={alt}", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@dataclass(frozen=True, slots=True)
class VectorsPage:
    """``tests/web/vectors.html`` once its module has run: its report, and calls into it."""

    driver: WebDriver
    kind: str  # a key of ORIGINS
    origin: str
    results: dict[str, Any]

    def call(self, function: str, *args: object) -> Any:
        """Return ``window.meshnodeVectors[function](...args)`` run in the page."""
        script = f"return window.meshnodeVectors.{function}(...arguments)"
        return self.driver.execute_script(script, *args)

    def web_crypto(self) -> dict[str, Any]:
        """What the page's spy saw of WebCrypto since the page loaded."""
        seen: dict[str, Any] = self.driver.execute_script("return window.webCrypto")
        return seen


ORIGINS = {"loopback": "127.0.0.1", "lan-name": LAN_NAME}


@pytest.fixture(params=list(ORIGINS))
def vectors_page(
    request: pytest.FixtureRequest, browser: WebDriver, static_server: int
) -> VectorsPage:
    """The vectors page, loaded afresh from the loopback address or from the LAN-style name."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    origin = f"http://{ORIGINS[request.param]}:{static_server}"
    browser.get(f"{origin}/test/vectors.html")
    try:
        results = WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=POLL_S).until(
            lambda driver: driver.execute_script("return window.results")
        )
    except TimeoutException:
        pytest.fail(f"{origin}: the page never reported; errors: {_page_errors(browser)}")
    if "error" in results:
        pytest.fail(f"{origin}: the page failed: {results['error']}")
    return VectorsPage(driver=browser, kind=request.param, origin=origin, results=results)


def _page_errors(driver: WebDriver) -> Any:
    """Uncaught errors the page recorded (for a failure's message)."""
    return driver.execute_script("return window.pageErrors")

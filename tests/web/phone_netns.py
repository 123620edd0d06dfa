"""The phone of ``test_page_netns_browser``: run inside the phone's network namespace.

``python -m tests.web.phone_netns URL TEXT`` starts headless phone-sized Chromium (the
conftest's ``_chromium``: its one ``--host-resolver-rules`` entry maps only ``village.test``,
which is not used here), opens URL, waits until the page reaches the box, records what the
page has of WebCrypto, posts TEXT, waits until the post is on the timeline and prints one
JSON object. On a failure the object has ``error`` (and what was seen until then) and the
exit status is 1. Every wait is bounded; the caller also kills it after its own timeout.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from tests.web.conftest import _chromium

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

LOAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
POST_TIMEOUT_S = 10.0
POLL_S = 0.05

_SEEN = """return {
  href: location.href,
  isSecureContext: window.isSecureContext,
  subtle: typeof (window.crypto && window.crypto.subtle),
  serviceWorker: typeof navigator.serviceWorker,
  signer: document.documentElement.dataset.signer ?? null,
  meId: document.getElementById('me-id').textContent,
}"""
_STATUS = "const s = document.getElementById('box-status'); return s ? s.textContent : null"
_CONNECTED = (
    "const s = document.getElementById('box-status'); return s?.textContent.includes('Connected')"
)
_TIMELINE = "return [...document.querySelectorAll('#timeline .text')].map(e => e.textContent)"


def _until(driver: WebDriver, what: str, script: str, timeout_s: float) -> Any:
    """Poll ``script`` until it returns something truthy; TimeoutException names ``what``."""
    from selenium.webdriver.support.wait import WebDriverWait

    wait = WebDriverWait(driver, timeout_s, poll_frequency=POLL_S)
    return wait.until(lambda d: d.execute_script(script), f"waiting for {what}")


def _visit(driver: WebDriver, url: str, text: str, report: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    driver.set_page_load_timeout(LOAD_TIMEOUT_S)
    driver.get(url)
    _until(driver, "the page to reach the box", _CONNECTED, CONNECT_TIMEOUT_S)
    # The signer is chosen before the first request to the box, so it is set by now.
    report.update(driver.execute_script(_SEEN))
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()
    shown = f"const t = (() => {{ {_TIMELINE} }})(); return t.includes({json.dumps(text)})"
    _until(driver, "the post on the timeline", shown, POST_TIMEOUT_S)
    report["timeline"] = driver.execute_script(_TIMELINE)


def main(argv: list[str]) -> int:
    """Run the phone against ``argv`` = [URL, TEXT]; print the report; 0 if all went well."""
    from selenium.common.exceptions import WebDriverException

    url, text = argv
    report: dict[str, Any] = {}
    with _chromium() as driver:
        try:
            _visit(driver, url, text, report)
        except WebDriverException as exc:
            report["error"] = f"{type(exc).__name__}: {exc.msg}"
            try:
                report["box_status"] = driver.execute_script(_STATUS)
                report["href"] = driver.current_url
            except WebDriverException:
                pass
    print(json.dumps(report), flush=True)
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

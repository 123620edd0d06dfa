"""private.js in headless Chromium: the known answers, and messages both ways with Python.

Every test runs twice: from the loopback address (a secure context) and from a LAN-style
name, where WebCrypto is absent as on a phone (conftest.py). The page reports what the
browser computed; the expectations and the comparisons live here.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.codec.content import (
    PrivateInner,
    decode_enckey,
    decode_private_inner,
    encode_private_inner,
    recipient_tag,
)
from meshnode.codec.message import ContentType
from meshnode.errors import DecodeError
from meshnode.secure.private import (
    PrivateMessageError,
    enc_keypair,
    is_usable_enc_key,
    open_private,
    seal,
)
from tests.fakes import identity
from tests.unit.test_private import LOW_ORDER_KEYS, crafted
from tests.web.conftest import ORIGINS, PAGE_TIMEOUT_S, POLL_S

if TYPE_CHECKING:
    from collections.abc import Callable

    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "private.json").read_text()
)
MESSAGES: list[dict[str, Any]] = VECTORS["messages"]
AUTHOR = enc_keypair(identity(1).seed)


class PrivatePage:
    """``vectors.html?page=private_page`` once its module has run: its report, and calls."""

    def __init__(self, driver: WebDriver, kind: str, results: dict[str, Any]) -> None:
        self.driver, self.kind, self.results = driver, kind, results

    def call(self, function: str, *args: object) -> Any:
        """Return ``window.meshnodePrivate[function](...args)`` run in the page."""
        script = f"return window.meshnodePrivate.{function}(...arguments)"
        return self.driver.execute_script(script, *args)


@pytest.fixture(params=list(ORIGINS))
def page(request: pytest.FixtureRequest, browser: WebDriver, static_server: int) -> PrivatePage:
    """The private-message page, loaded afresh from each origin."""
    from selenium.webdriver.support.wait import WebDriverWait

    origin = f"http://{ORIGINS[request.param]}:{static_server}"
    browser.get(f"{origin}/test/vectors.html?page=private_page")
    results = WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=POLL_S).until(
        lambda driver: driver.execute_script("return window.results")
    )
    if "error" in results:
        pytest.fail(f"{request.param}: the page failed: {results['error']}")
    return PrivatePage(browser, request.param, results)


def outcome(compute: Callable[[], Any]) -> Any:
    """What the page would report: the value, or the error's class and message."""
    try:
        return compute()
    except DecodeError as exc:  # PrivateMessageError included
        return f"error {type(exc).__name__}: {exc}"


def python_open(payload: bytes, secret: bytes, as_author: bool | None = None) -> str:
    """open_private's result as the page words it."""

    def read() -> str:
        inner, mine = open_private(payload, secret, as_author=as_author)
        return f"{'author' if mine else 'recipient'} {inner.hex()}"

    result: str = outcome(read)
    return result


def test_page_runs_where_it_claims(page: PrivatePage) -> None:
    context = page.results["context"]
    assert context["secure"] is (page.kind == "loopback"), context
    assert context["subtlePresent"] is (page.kind == "loopback"), context
    assert context["contentTypes"] == [ContentType.PRIVATE, ContentType.ENCKEY]


def test_key_vectors(page: PrivatePage) -> None:
    want = [{k: c[k] for k in ("secret_hex", "public_hex", "generation")} for c in VECTORS["keys"]]
    assert page.results["keys"] == want


def test_enckey_vectors(page: PrivatePage) -> None:
    for case, report in zip(VECTORS["enckeys"], page.results["enckeys"], strict=True):
        assert report["encoded"] == case["content_hex"]
        assert report["decoded"] == {k: case[k] for k in ("key_hex", "generation", "homes_hex")}


def test_message_vectors_and_who_can_read(page: PrivatePage) -> None:
    for case, report in zip(MESSAGES, page.results["messages"], strict=True):
        name, inner = case["name"], case["inner_hex"]
        assert report["inner_hex"] == inner, name
        assert report["inner_decoded"] == case["inner"], name
        assert report["payload_hex"] == case["payload_hex"], name
        assert report["size"] == len(case["payload_hex"]) // 2, name
        assert report["author"] == f"author {inner}", name
        others = [r for r in case["recipients"] if r["seed_hex"] != case["author_seed_hex"]]
        assert report["recipients"] == [f"recipient {inner}"] * len(others), name
        assert report["third"].startswith("error PrivateMessageError: not addressed"), name
        assert report["entry_hex"] == case["entry"]["full_hex"], name  # the browser's entry


def test_python_messages_open_in_the_browser(page: PrivatePage) -> None:
    rng = random.Random(18)
    box = enc_keypair(identity(200).seed)  # the box's own key: never a recipient
    for count in range(1, 8):
        readers = [enc_keypair(rng.randbytes(32)) for _ in range(count)]
        inner = text_inner(rng, count)
        payload = seal(inner, [r.public_key for r in readers], AUTHOR.secret_key)
        for key in (AUTHOR, *readers, box):
            got = page.call("openMany", [payload.hex()], key.secret_key.hex())
            assert got == [python_open(payload, key.secret_key)], (count, key.public_key.hex())
        assert got[0].startswith("error PrivateMessageError: not addressed")


def test_browser_messages_open_in_python(page: PrivatePage) -> None:
    rng = random.Random(19)
    jobs, expected = [], []
    for count in range(1, 8):
        readers = [enc_keypair(rng.randbytes(32)) for _ in range(count)]
        inner = text_inner(rng, count)
        jobs.append([inner.hex(), [r.public_key.hex() for r in readers], AUTHOR.secret_key.hex()])
        expected.append((inner, readers))
    made = page.call("sealMany", jobs)
    third = enc_keypair(bytes.fromhex(VECTORS["third_seed_hex"]))
    for payload_hex, (inner, readers) in zip(made, expected, strict=True):
        payload = bytes.fromhex(payload_hex)
        assert open_private(payload, AUTHOR.secret_key) == (inner, True)
        for reader in readers:
            assert open_private(payload, reader.secret_key) == (inner, False)
        with pytest.raises(PrivateMessageError, match="not addressed"):
            open_private(payload, third.secret_key)
    assert len(set(made)) == len(made)  # fresh ephemeral keys from the browser's randomness


@pytest.mark.parametrize("case", MESSAGES[:2], ids=lambda c: c["name"])
def test_a_flipped_byte_anywhere_fails_as_in_python(
    page: PrivatePage, case: dict[str, Any]
) -> None:
    payload = bytes.fromhex(case["payload_hex"])
    damaged = []
    for position in range(len(payload)):
        for bit in (0x01, 0x80):
            copy = bytearray(payload)
            copy[position] ^= bit
            damaged.append(bytes(copy))
    seeds = [case["author_seed_hex"], *(r["seed_hex"] for r in case["recipients"])]
    for seed_hex in seeds:
        key = enc_keypair(bytes.fromhex(seed_hex)).secret_key
        browser = page.call("openMany", [d.hex() for d in damaged], key.hex())
        python = [python_open(d, key) for d in damaged]
        assert browser == python
        assert all(b.startswith("error PrivateMessageError: ") for b in browser)


def test_odd_payloads_are_judged_as_python_does(page: PrivatePage) -> None:
    rng = random.Random(20)
    base = bytes.fromhex(MESSAGES[1]["payload_hex"])
    odd = [rng.randbytes(n) for n in (0, 1, 96, 97, 98, 146, 200, 400)]
    odd += [base[:n] for n in (97, 130, 145, 146, len(base) - 1)] + [base + b"\x00"]
    odd += [p + base[32:] for p in LOW_ORDER_KEYS]
    recipient = enc_keypair(bytes.fromhex(MESSAGES[1]["recipients"][0]["seed_hex"]))
    odd += [crafted(n, s, recipient.public_key) for n, s in ((0, 2), (3, 2), (8, 7), (2, 2))]
    author = enc_keypair(bytes.fromhex(MESSAGES[1]["author_seed_hex"]))
    for key in (recipient, author):
        for as_author in (None, True, False):
            browser = page.call("openMany", [p.hex() for p in odd], key.secret_key.hex(), as_author)
            assert browser == [python_open(p, key.secret_key, as_author) for p in odd]


def test_low_order_keys_are_refused_as_in_python(page: PrivatePage) -> None:
    keys = [*LOW_ORDER_KEYS, AUTHOR.public_key, enc_keypair(identity(2).seed).public_key]
    report = page.call("usable", [k.hex() for k in keys], AUTHOR.secret_key.hex())
    assert [r["usable"] for r in report] == [is_usable_enc_key(k) for k in keys]
    assert [r["usable"] for r in report] == [False] * len(LOW_ORDER_KEYS) + [True, True]
    assert all("low-order point" in r["seal"] for r in report[: len(LOW_ORDER_KEYS)])
    assert report[-2]["seal"].startswith("error RangeError: a private message has 1 to 7")
    assert report[-1]["seal"] == "ok"


def test_decoders_agree_with_python(page: PrivatePage) -> None:
    rng = random.Random(21)
    key = bytes.fromhex(VECTORS["keys"][0]["public_hex"])
    tag = recipient_tag(identity(2).feed_id)
    enckeys = [rng.randbytes(rng.randrange(0, 140)) for _ in range(40)]
    enckeys += [
        key + tail for tail in (b"", b"\x80\x00", b"\x80\x80\x80\x80\x10", b"\x00" + bytes(31))
    ]
    enckeys += [
        key + b"\x00" + bytes(32) * 2,
        key + b"\x05" + bytes(32) + b"\x01" * 32 + b"\x02" * 32,
        bytes(33),
    ]
    inners = [rng.randbytes(rng.randrange(0, 80)) for _ in range(40)]
    inners += [b"\x01\x00", b"\x01\x02" + tag, b"\x01\x01" + tag + b"\xff", b"\x03\x01" + tag]
    inners += [b"\x01\x01" + tag + "é".encode(), b"\x03\x01" + tag + bytes(32) + b"ok"]

    def enckey_view(data: bytes) -> Any:
        enckey = decode_enckey(data)
        return {"key_hex": enckey.key.hex(), "generation": enckey.generation,
                "homes_hex": [h.hex() for h in enckey.homes]}  # fmt: skip

    def inner_view(data: bytes) -> Any:
        inner = decode_private_inner(data)
        return {"content_type": int(inner.content_type), "payload_hex": inner.payload.hex(),
                "recipient_tags_hex": [t.hex() for t in inner.recipient_tags]}  # fmt: skip

    for function, cases, view in (
        ("decodeEncKeys", enckeys, enckey_view),
        ("decodeInners", inners, inner_view),
    ):
        python = [outcome(functools.partial(view, d)) for d in cases]
        assert page.call(function, [d.hex() for d in cases]) == python
        assert sum(not isinstance(o, str) for o in python) >= 2  # both sides of the rules


def test_encoders_refuse_what_python_refuses(page: PrivatePage) -> None:
    key = bytes.fromhex(VECTORS["keys"][0]["public_hex"])
    report = page.call("refusals", key.hex(), recipient_tag(identity(2).feed_id).hex())
    assert report.pop("ok") == "ok"
    assert {name: value.split(":")[0] for name, value in report.items()} == dict.fromkeys(
        report, "error RangeError"
    )


def test_private_js_never_touches_webcrypto_subtle(page: PrivatePage) -> None:
    seen = page.driver.execute_script("return window.webCrypto")
    assert seen["subtleReads"] == []
    # Randomness comes from getRandomValues (nacl.randomBytes), present without a secure context.
    page.call(
        "sealMany", [["00", [AUTHOR.public_key.hex()], enc_keypair(bytes(32)).secret_key.hex()]]
    )
    seen = page.driver.execute_script("return window.webCrypto")
    assert seen["subtleReads"] == []
    assert len(seen["randomCalls"]) >= 1


def text_inner(rng: random.Random, count: int) -> bytes:
    """An inner POST to ``count`` made-up recipients with up to 200 bytes of text."""
    text = "".join(rng.choice("abc xyz é✓") for _ in range(rng.randrange(0, 60)))
    tags = tuple(rng.randbytes(8) for _ in range(count))
    inner = PrivateInner(content_type=ContentType.POST, recipient_tags=tags, payload=text.encode())
    return encode_private_inner(inner)

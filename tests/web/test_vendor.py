"""The vendored JavaScript is the npm packages' own, unmodified: its sha256 is pinned here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[2] / "meshnode" / "web" / "static" / "vendor"
# From `npm pack` of tweetnacl@1.0.3, @noble/hashes@2.4.0, @scure/bip39@2.4.0 and
# qrcode-generator@2.0.4 (vendor/README.md).
PINS = {
    "tweetnacl/nacl-fast.min.js": (
        "3ec535c004aeeb225785d8e93fb33bf99f52e399bd7dfc01969b5629baea5131"
    ),
    "tweetnacl/LICENSE": "88d9b4eb60579c191ec391ca04c16130572d7eedc4a86daa58bf28c6e14c9bcd",
    "noble-hashes/sha2.js": "471746bba6ec4c6238ca41358d1d3b40b6ff31cf3363f0b4d550c649c1a8e83b",
    "noble-hashes/_md.js": "60cf3010fda89e3e4d3f0e7ff1ce249e9c467f34b4fd41b6fd6101d9f69be763",
    "noble-hashes/_u64.js": "b09da8c07fe8187c07649494cdb7cd0bcf13df90b506a9473d19e4d5f8c2e102",
    "noble-hashes/utils.js": "037ad49adb78168b6b699598fd33f85f7877456b1d28b4d032e2a1a16807947c",
    "noble-hashes/blake2.js": "03f00237bcc0b4d822a80f7c0ac22e42632c48e246c3b6da584e6452186e32f0",
    "noble-hashes/_blake.js": "cabbff61d1f373bac45594ad758df7c42e176464ddbb94b44f5533fa977a4f56",
    "noble-hashes/LICENSE": "4f221aee6e072336700c408c68ab3b96a3fc09f6aebe6f48f1bd99e5ef13faec",
    "scure-bip39/english.js": "d87a52ebb094d166717691e624aea3a1bcd45dd04e6c7748e8edb7ae10f3c458",
    "scure-bip39/LICENSE": "1565efd0ec4580bfaa96c7eeaaa9af3791baa1cc562c3bde62d0a055910b9ec7",
    "qrcode-generator/qrcode.mjs": (
        "ea91d7118a5395289170da848b7c6758b996163bfbccf312591ab65a4911b7c0"
    ),
}


@pytest.mark.parametrize(("name", "sha256"), PINS.items())
def test_vendored_file_is_unmodified(name: str, sha256: str) -> None:
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha256, (
        f"vendor/{name} differs from the npm package; vendored files are never edited"
    )


def test_every_vendored_file_is_pinned_and_listed() -> None:
    shipped = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()}
    assert shipped - {"README.md"} == set(PINS)
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    for name, sha256 in PINS.items():
        assert f"| `{name}` | `{sha256}` |" in readme, f"README.md must list {name} with its pin"

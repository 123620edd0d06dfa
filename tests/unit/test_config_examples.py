"""Every TOML example a user may copy (README, firmware-notes/, hardware/, systemd/) loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshnode.host.config import EXAMPLE_CONFIG, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "firmware-notes").glob("*.md"))]
DOCS += sorted((ROOT / "hardware").glob("*.md"))
_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for n, match in enumerate(_BLOCK.finditer(text), 1):
            found.append((f"{doc.relative_to(ROOT)}#{n}", match[1]))
    return found


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    names = {name.split("#")[0] for name, _ in EXAMPLES}
    assert "README.md" in names
    assert any(name.startswith("firmware-notes/") for name in names)


@pytest.mark.parametrize(("name", "text"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_loads(name: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(text, encoding="utf-8")
    load_config(path)  # raises ConfigError naming the key


def test_the_example_file_and_the_installed_config_load(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    load_config(path)
    load_config(ROOT / "systemd" / "meshnode.toml")
    # and the radio table commented out in each parses once uncommented
    for source in (EXAMPLE_CONFIG, (ROOT / "systemd" / "meshnode.toml").read_text()):
        radio = source[source.index("# [[radio]]") :]
        lines = [re.sub(r"^# ?", "", line) for line in radio.splitlines() if line.startswith("#")]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert load_config(path).radios

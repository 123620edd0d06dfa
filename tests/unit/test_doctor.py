"""meshnode doctor: every finding says what is wrong and how to fix it; exit 1 on errors."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from meshnode.cli.checks import check_clock

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.test_cli import Cli


def _findings(cli: Cli, *argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = cli(*argv, "doctor", "--json")
    report = json.loads(result.out)
    assert report["ok"] is (result.code == 0)
    return result.code, {f["check"]: f for f in report["findings"]}


def _radio_config(home: Path, port: str) -> Path:
    config = home / "radio.toml"
    config.write_text(
        f'[[radio]]\nname = "lora"\ndriver = "kiss"\nport = "{port}"\nregion = "EU868"\n'
    )
    return config


def test_a_clean_node_has_no_errors(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    code, found = _findings(cli)
    assert code == 0
    assert found["secret key"]["level"] == "ok"
    assert found["daemon"]["level"] == "warn"  # not running: said, with how to start it
    assert "systemctl start meshnode" in found["daemon"]["fix"]


def test_a_world_readable_secret_key_is_an_error_with_its_fix(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    secret = home / "data" / "secret"
    secret.chmod(0o644)
    code, found = _findings(cli)
    assert code == 1
    assert found["secret key"]["level"] == "error"
    assert found["secret key"]["fix"] == f"chmod 600 {secret}"
    text = cli("doctor")
    assert text.code == 1
    assert f"fix: chmod 600 {secret}" in text.out


def test_a_missing_radio_is_an_error_with_its_fix(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    config = _radio_config(home, str(home / "ttyUSB9"))
    code, found = _findings(cli, "--config", str(config))
    assert code == 1
    assert found["radio lora"]["level"] == "error"
    assert "does not exist" in found["radio lora"]["message"]
    assert "/dev/serial/by-id" in found["radio lora"]["fix"]


def test_a_device_that_is_not_a_radio_is_reported(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    config = _radio_config(home, "loop://")  # echoes what is written: no RNode answer
    code, found = _findings(cli, "--config", str(config))
    assert code == 1
    assert "does not answer as a kiss device" in found["radio lora"]["message"]


def test_a_bad_config_is_the_finding(cli: Cli, home: Path) -> None:
    config = home / "bad.toml"
    config.write_text("[node]\nbogus = 1\n")
    code, found = _findings(cli, "--config", str(config))
    assert code == 1
    assert "node.bogus" in found["config"]["message"]


def test_a_clock_in_the_past_is_an_error() -> None:
    assert check_clock(0.0).level == "error"  # 1970: a Pi that booted without network time
    assert check_clock(time.time()).level == "ok"

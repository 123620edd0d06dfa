"""A config file that is hostile or unreachable ends in exit 78 and one clear line.

Deep nesting (tomllib recurses), a config folder we may not enter, a FIFO or a device
named as the config, a file too big to be one: each is a config error (EX_CONFIG, which
the systemd unit does not restart on), never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshnode.errors import ConfigError
from meshnode.host.config import MAX_CONFIG_BYTES, parse_config
from tests.unit.test_cli import SCRUBBED

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.test_cli import Cli, Result

EX_CONFIG = 78
_CLI_TIMEOUT_S = 30.0
_UNMAPPED_UID = 12345  # an owner that does not exist inside the test's user namespace


def _one_config_error(result: Result) -> str:
    assert result.code == EX_CONFIG, result.err
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("meshnode: error: bad config: ")
    return lines[0]


@pytest.mark.parametrize(
    "value",
    [
        "[" * 100_000 + "]" * 100_000,
        "{a=" * 20_000 + "1" + "}" * 20_000,
        "[{a=" * 5_000 + "1" + "}]" * 5_000,
    ],
    ids=["arrays", "inline tables", "both"],
)
def test_deep_nesting_is_a_config_error(cli: Cli, home: Path, value: str) -> None:
    config = home / "deep.toml"
    config.write_text(f"[node]\ndata_dir = {value}\n")
    line = _one_config_error(cli("--config", str(config), "whoami"))
    assert line.endswith(f"{config}: not valid TOML: values nest too deeply")
    assert cli("--config", str(config), "doctor").code == 1  # a finding, not a traceback


def test_nesting_tomllib_takes_names_the_key(cli: Cli, home: Path) -> None:
    config = home / "nested.toml"
    config.write_text("[node]\ndata_dir = " + "[" * 50 + "1" + "]" * 50 + "\n")
    assert "node.data_dir: must be a string" in _one_config_error(
        cli("--config", str(config), "whoami")
    )


_TOML_BITS = st.sampled_from(
    ["[", "]", "{", "}", "[[", "]]", "=", ",", ".", '"', "'", '"""', "\n", "#", " ", "a", "1"]
)
_TOML_ISH = st.lists(_TOML_BITS, max_size=200).map("".join)


@given(st.one_of(st.text(max_size=300), _TOML_ISH))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text)


def test_a_file_over_the_limit_is_refused_unread(cli: Cli, home: Path) -> None:
    config = home / "big.toml"
    config.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    line = _one_config_error(cli("--config", str(config), "whoami"))
    assert line.endswith("cannot read config file: larger than 1 MiB")
    config.write_bytes(b"#" * MAX_CONFIG_BYTES)  # at the limit: a config of comments
    assert cli("--config", str(config), "whoami").code != EX_CONFIG


def test_a_folder_named_as_the_config_is_a_config_error(cli: Cli, home: Path) -> None:
    line = _one_config_error(cli("--config", str(home), "whoami"))
    assert line.endswith("cannot read config file: a directory, not a file")


def _meshnode(
    home: Path, *argv: str, env: dict[str, str], wrap: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    return subprocess.run(
        [*wrap, sys.executable, "-m", "meshnode", "--data", str(home / "data"), *argv],
        capture_output=True,
        text=True,
        env={**clean, "HOME": str(home), **env},
        timeout=_CLI_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_fifo_named_as_the_config_is_refused_without_waiting(home: Path) -> None:
    fifo = home / "fifo.toml"
    os.mkfifo(fifo)
    done = _meshnode(home, "--config", str(fifo), "whoami", env={})
    assert done.returncode == EX_CONFIG, done.stderr
    assert done.stderr.strip().endswith("cannot read config file: not a regular file")


def _locked_out() -> tuple[str, ...]:
    """How to run the CLI so that a folder mode 000 stops it (root passes any mode)."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare(1): a mode-000 folder stops nobody")
    probe = subprocess.run([unshare, "--user", "--map-root-user", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    # In a user namespace that maps only root, files of an unmapped owner get no override.
    return (unshare, "--user", "--map-root-user")


@pytest.mark.parametrize("explicit", [False, True], ids=["default", "--config"])
def test_a_config_folder_we_may_not_enter_is_a_config_error(home: Path, explicit: bool) -> None:
    wrap = _locked_out()
    folder = home / "xdg" / "meshnode"
    folder.mkdir(parents=True)
    (folder / "meshnode.toml").write_text("[node]\nmax_content_bytes = 100\n")
    if wrap:
        os.chown(folder, _UNMAPPED_UID, _UNMAPPED_UID)
    folder.chmod(0)
    try:
        argv = ("--config", str(folder / "meshnode.toml")) if explicit else ()
        done = _meshnode(
            home, *argv, "whoami", env={"XDG_CONFIG_HOME": str(home / "xdg")}, wrap=wrap
        )
    finally:
        folder.chmod(0o700)
    assert done.returncode == EX_CONFIG, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"meshnode: error: bad config: {folder / 'meshnode.toml'}: "
        "cannot read config file: Permission denied"
    )

"""Data dir and config path precedence, identity and network key files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from meshnode.errors import ConfigError
from meshnode.host.config import Config, NodeSection, parse_config
from meshnode.host.datadir import (
    SYSTEM_CONFIG_PATH,
    ConfigLocation,
    DataDirError,
    IdentityExists,
    IdentityMissing,
    SecretExposed,
    init_data_dir,
    load_identity,
    load_network_key,
    network_path,
    read_config,
    resolve_config_path,
    resolve_data_dir,
    secret_path,
)
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id

HOME = {"HOME": "/home/ana"}
PRIVATE_KEY = bytes(range(32))


# -- config path ----------------------------------------------------------------------------


def test_config_path_defaults_to_xdg_under_home() -> None:
    location = resolve_config_path(None, HOME)
    assert location == ConfigLocation(
        path=Path("/home/ana/.config/meshnode/meshnode.toml"), required=False
    )


def test_config_path_follows_xdg_config_home_but_not_a_relative_one() -> None:
    env = {**HOME, "XDG_CONFIG_HOME": "/xdg"}
    assert resolve_config_path(None, env).path == Path("/xdg/meshnode/meshnode.toml")
    env = {**HOME, "XDG_CONFIG_HOME": "relative"}
    assert resolve_config_path(None, env).path == Path("/home/ana/.config/meshnode/meshnode.toml")


@pytest.mark.parametrize("var", ["INVOCATION_ID", "STATE_DIRECTORY"])
def test_config_path_under_systemd_is_etc(var: str) -> None:
    env = {**HOME, "XDG_CONFIG_HOME": "/xdg", var: "/var/lib/meshnode"}
    assert resolve_config_path(None, env) == ConfigLocation(path=SYSTEM_CONFIG_PATH, required=False)
    assert Path("/etc/meshnode/meshnode.toml") == SYSTEM_CONFIG_PATH


def test_an_operator_without_a_config_of_their_own_gets_the_box_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "etc-meshnode.toml"
    monkeypatch.setattr("meshnode.host.datadir.SYSTEM_CONFIG_PATH", box)
    env = {**HOME, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    own = tmp_path / "xdg" / "meshnode" / "meshnode.toml"
    assert resolve_config_path(None, env).path == own  # neither exists: the user's path
    box.write_text("")
    assert resolve_config_path(None, env).path == box
    own.parent.mkdir(parents=True)
    own.write_text("")
    assert resolve_config_path(None, env).path == own  # a config of their own wins


def test_config_path_uses_configuration_directory() -> None:
    env = {**HOME, "INVOCATION_ID": "x", "CONFIGURATION_DIRECTORY": "/etc/mn:/etc/other"}
    assert resolve_config_path(None, env).path == Path("/etc/mn/meshnode.toml")


def test_config_path_env_then_flag_win_and_are_required() -> None:
    env = {**HOME, "INVOCATION_ID": "x", "MESHNODE_CONFIG": "/env.toml"}
    assert resolve_config_path(None, env) == ConfigLocation(path=Path("/env.toml"), required=True)
    assert resolve_config_path("/flag.toml", env) == ConfigLocation(
        path=Path("/flag.toml"), required=True
    )


def test_read_config_missing_default_is_defaults_missing_required_is_an_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "none.toml"
    assert read_config(ConfigLocation(path=missing, required=False)) == Config()
    with pytest.raises(ConfigError):
        read_config(ConfigLocation(path=missing, required=True))


# -- data dir -------------------------------------------------------------------------------


def test_data_dir_defaults_to_xdg_data_home() -> None:
    assert resolve_data_dir(None, HOME, Config()) == Path("/home/ana/.local/share/meshnode")
    env = {**HOME, "XDG_DATA_HOME": "/xdg-data"}
    assert resolve_data_dir(None, env, Config()) == Path("/xdg-data/meshnode")


def test_data_dir_precedence() -> None:
    config = Config(node=NodeSection(data_dir="/from-config"), source="/etc/m.toml")
    env = {
        **HOME,
        "XDG_DATA_HOME": "/xdg-data",
        "STATE_DIRECTORY": "/var/lib/meshnode",
        "MESHNODE_DATA": "/from-env",
    }
    assert resolve_data_dir("/flag", env, config) == Path("/flag")
    assert resolve_data_dir(None, env, config) == Path("/from-env")
    env.pop("MESHNODE_DATA")
    assert resolve_data_dir(None, env, config) == Path("/from-config")
    assert resolve_data_dir(None, env, Config()) == Path("/var/lib/meshnode")
    env.pop("STATE_DIRECTORY")
    assert resolve_data_dir(None, env, Config()) == Path("/xdg-data/meshnode")


def test_relative_config_data_dir_is_taken_from_the_config_files_directory() -> None:
    config = parse_config('[node]\ndata_dir = "nodes/one"\n', "/etc/meshnode/meshnode.toml")
    assert resolve_data_dir(None, HOME, config) == Path("/etc/meshnode/nodes/one")
    config = parse_config('[node]\ndata_dir = "~/mesh"\n', "/etc/meshnode/meshnode.toml")
    assert resolve_data_dir(None, HOME, config) == Path("~/mesh").expanduser()


# -- identity and network key ---------------------------------------------------------------


def test_init_creates_private_dir_and_secret(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    identity = init_data_dir(data, None)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    secret = secret_path(data)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    document = json.loads(secret.read_text())
    assert document["curve"] == "ed25519"
    assert document["public"] == format_feed_id(identity.feed_id)
    assert load_identity(data) == identity
    assert not network_path(data).exists()
    assert load_network_key(data) == DEFAULT_NETWORK_KEY


def test_init_twice_refuses_and_changes_nothing(tmp_path: Path) -> None:
    init_data_dir(tmp_path, None)
    before = secret_path(tmp_path).read_bytes()
    with pytest.raises(IdentityExists):
        init_data_dir(tmp_path, PRIVATE_KEY)
    assert secret_path(tmp_path).read_bytes() == before
    assert not network_path(tmp_path).exists()


def test_init_with_a_network_key_writes_it(tmp_path: Path) -> None:
    init_data_dir(tmp_path, PRIVATE_KEY)
    assert network_path(tmp_path).read_text() == PRIVATE_KEY.hex() + "\n"
    assert load_network_key(tmp_path) == PRIVATE_KEY


def test_init_keeps_an_existing_network_file_unless_it_disagrees(tmp_path: Path) -> None:
    network_path(tmp_path).write_text(PRIVATE_KEY.hex())
    with pytest.raises(DataDirError, match="another network key"):
        init_data_dir(tmp_path, DEFAULT_NETWORK_KEY)
    assert not secret_path(tmp_path).exists()
    init_data_dir(tmp_path, PRIVATE_KEY)
    assert load_network_key(tmp_path) == PRIVATE_KEY


def test_missing_identity_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(IdentityMissing, match="run `meshnode init`"):
        load_identity(tmp_path)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (0o644, "readable by others (mode 0644)"),
        (0o640, "readable by group (mode 0640)"),
        (0o620, "writable by group (mode 0620)"),
        (0o602, "writable by others (mode 0602)"),
    ],
)
def test_exposed_secret_is_refused_with_the_fix(tmp_path: Path, mode: int, words: str) -> None:
    init_data_dir(tmp_path, None)
    secret = secret_path(tmp_path)
    secret.chmod(mode)
    with pytest.raises(SecretExposed) as info:
        load_identity(tmp_path)
    assert str(info.value) == f"secret key {secret} is {words}; fix with: chmod 600 {secret}"


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{}",
        b'{"curve": "ed448", "seed": "AAAA"}',
        b'{"curve": "ed25519", "seed": "AAAA"}',
        b'{"curve": "ed25519", "seed": "!!"}',
        b"[1, 2]",
    ],
)
def test_malformed_secret_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    fd = os.open(secret_path(tmp_path), os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(DataDirError, match="is malformed"):
        load_identity(tmp_path)


def test_secret_whose_public_key_disagrees_is_damaged(tmp_path: Path) -> None:
    init_data_dir(tmp_path, None)
    secret = secret_path(tmp_path)
    document = json.loads(secret.read_text())
    document["public"] = "@" + "A" * 43 + "=.ed25519"
    secret.write_text(json.dumps(document))
    with pytest.raises(DataDirError, match="does not match"):
        load_identity(tmp_path)


def test_malformed_network_file_is_a_clear_error(tmp_path: Path) -> None:
    network_path(tmp_path).write_text("abcd\n")
    with pytest.raises(DataDirError, match=r"network key .* is malformed"):
        load_network_key(tmp_path)


def test_secret_that_is_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    secret_path(tmp_path).mkdir(mode=0o700)
    with pytest.raises(DataDirError, match=r"secret key .*/secret is not a regular file"):
        load_identity(tmp_path)

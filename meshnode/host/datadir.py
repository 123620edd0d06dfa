"""Where a node keeps its files, and the identity and network key files themselves.

Layout of a data directory (created 0700; ``init`` makes an empty one it is given 0700)::

    DIR/secret    JSON {"curve": "ed25519", "public": "@<base64>.ed25519", "seed": "<base64>"},
                  mode 0600; refused, like ssh does, when group or others may read or write it
    DIR/network   64 hex digits of the network key, mode 0600; absent means
                  identity.DEFAULT_NETWORK_KEY
    DIR/store/    the FileStore

Path precedence (env is passed in, so tests need not touch os.environ):

* data dir: --data, $MESHNODE_DATA, [node] data_dir, $STATE_DIRECTORY (systemd),
  $XDG_DATA_HOME/meshnode, ~/.local/share/meshnode
* config: --config, $MESHNODE_CONFIG (both must exist), then under systemd
  $CONFIGURATION_DIRECTORY/meshnode.toml or /etc/meshnode/meshnode.toml, else
  $XDG_CONFIG_HOME/meshnode/meshnode.toml or ~/.config/meshnode/meshnode.toml when it
  exists, else /etc/meshnode/meshnode.toml when that exists (may be missing)
"""

from __future__ import annotations

import base64
import binascii
import grp
import json
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshnode.errors import DecodeError, MeshnodeError
from meshnode.host.config import Config, load_config
from meshnode.secure.identity import (
    DEFAULT_NETWORK_KEY,
    KEY_BYTES,
    Identity,
    format_feed_id,
    parse_network_key,
)
from meshnode.store.files import fsync_dir, write_atomically

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "APP_NAME",
    "CONFIG_NAME",
    "DATA_DIR_MODE",
    "SECRET_FILE_MODE",
    "SYSTEM_CONFIG_PATH",
    "ConfigLocation",
    "DataDirDenied",
    "DataDirError",
    "IdentityExists",
    "IdentityMissing",
    "SecretExposed",
    "config_file_path",
    "init_data_dir",
    "load_identity",
    "load_network_key",
    "network_path",
    "read_config",
    "resolve_config_path",
    "resolve_data_dir",
    "running_under_systemd",
    "secret_path",
    "store_path",
]

log = logging.getLogger(__name__)

# A key file is created once, by us: never through a link planted under its name.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

APP_NAME = "meshnode"
CONFIG_NAME = "meshnode.toml"
SYSTEM_CONFIG_PATH = Path("/etc/meshnode") / CONFIG_NAME
DATA_DIR_MODE = 0o700  # the store, the keys and the logs of who was hidden: ours alone
SECRET_FILE_MODE = 0o600  # a key file, as ssh keeps them: read by its owner only
_CURVE = "ed25519"


class DataDirError(MeshnodeError):
    """The data directory or a file in it is missing, malformed or unsafe."""


class DataDirDenied(DataDirError):
    """This user may not read the data dir: it is another's (the service's, on a box)."""

    def __init__(self, message: str, *, in_group: bool) -> None:
        super().__init__(message)
        self.in_group = in_group  # of the data dir: the daemon's socket is open to them


class IdentityExists(DataDirError):
    """``init`` found a secret key already; nothing was changed."""


class IdentityMissing(DataDirError):
    """No secret key yet: ``meshnode init`` has not been run for this data dir."""


class SecretExposed(DataDirError):
    """The secret key file may be read or written by group or others."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigLocation:
    """The config file to read; a required one must exist, a default one may be missing."""

    path: Path
    required: bool


def running_under_systemd(env: Mapping[str, str]) -> bool:
    """True when started by systemd (it sets $INVOCATION_ID, and $STATE_DIRECTORY for us)."""
    return bool(env.get("INVOCATION_ID") or env.get("STATE_DIRECTORY"))


def _first_dir(value: str | None) -> Path | None:
    # systemd joins several directories with ':'; the first is ours.
    first = (value or "").split(":")[0]
    return Path(first) if first else None


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = env.get(var, "")
    return Path(value) if value and Path(value).is_absolute() else _home(env) / fallback


def resolve_config_path(explicit: str | None, env: Mapping[str, str]) -> ConfigLocation:
    """Which config file to read, by the precedence in the module docstring."""
    if explicit:
        return ConfigLocation(path=Path(explicit).expanduser(), required=True)
    if env.get("MESHNODE_CONFIG"):
        return ConfigLocation(path=Path(env["MESHNODE_CONFIG"]).expanduser(), required=True)
    if running_under_systemd(env) or env.get("CONFIGURATION_DIRECTORY"):
        conf_dir = _first_dir(env.get("CONFIGURATION_DIRECTORY"))
        path = conf_dir / CONFIG_NAME if conf_dir else SYSTEM_CONFIG_PATH
        return ConfigLocation(path=path, required=False)
    path = _xdg(env, "XDG_CONFIG_HOME", ".config") / APP_NAME / CONFIG_NAME
    if not _may_exist(path) and _may_exist(SYSTEM_CONFIG_PATH):
        path = SYSTEM_CONFIG_PATH  # a box's operator: the service's config and node
    return ConfigLocation(path=path, required=False)


def _may_exist(path: Path) -> bool:
    """False only when ``path`` is surely absent; a folder we may not enter is no proof.

    A config we cannot look at is not skipped for the defaults: reading it then says why.
    """
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass  # EACCES, ELOOP, EIO...: reading it will say which
    return True


def read_config(location: ConfigLocation) -> Config:
    """Load the config; a missing default file gives the defaults. ConfigError otherwise."""
    if not location.required and not _may_exist(location.path):
        log.debug("no config file at %s; using defaults", location.path)
        return Config()
    return load_config(location.path)


def resolve_data_dir(explicit: str | None, env: Mapping[str, str], config: Config) -> Path:
    """The data directory, by the precedence in the module docstring."""
    if explicit:
        return Path(explicit).expanduser()
    if env.get("MESHNODE_DATA"):
        return Path(env["MESHNODE_DATA"]).expanduser()
    if config.node.data_dir:
        return config_file_path(config, config.node.data_dir)
    state_dir = _first_dir(env.get("STATE_DIRECTORY"))
    if state_dir is not None:
        return state_dir
    return _xdg(env, "XDG_DATA_HOME", ".local/share") / APP_NAME


def config_file_path(config: Config, text: str) -> Path:
    """A path the config names: ``~`` expanded, a relative one taken from the file's folder."""
    path = Path(text).expanduser()
    if not path.is_absolute() and config.source != "defaults":
        path = Path(config.source).parent / path
    return path


def secret_path(data_dir: Path) -> Path:
    """The secret key file of a data dir."""
    return data_dir / "secret"


def network_path(data_dir: Path) -> Path:
    """The network key file of a data dir."""
    return data_dir / "network"


def store_path(data_dir: Path) -> Path:
    """The FileStore directory of a data dir."""
    return data_dir / "store"


def init_data_dir(data_dir: Path, network_key: bytes | None) -> Identity:
    """Create the data dir, a new identity and (for a private network) the network file.

    Raises IdentityExists, changing nothing, when the data dir already holds a secret key.
    """
    secret = secret_path(data_dir)
    if secret.exists():
        raise IdentityExists(f"an identity already exists in {secret}; refusing to replace it")
    _make_private_dir(data_dir)
    if network_key is not None:
        _write_network_key(data_dir, network_key)
    identity = Identity.generate()
    document = {
        "curve": _CURVE,
        "public": format_feed_id(identity.feed_id),
        "seed": base64.b64encode(identity.seed).decode("ascii"),
    }
    try:
        fd = os.open(secret, _CREATE_FLAGS, SECRET_FILE_MODE)
    except FileExistsError:
        raise IdentityExists(f"an identity already exists in {secret}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(document, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(data_dir)
    return identity


def _make_private_dir(data_dir: Path) -> None:
    """Create the data dir 0700; an empty one that others may enter is made 0700 too.

    One that already holds other files was not made for us (a home, /tmp): it is left as
    it is, with a warning; ``meshnode doctor`` says the same.
    """
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True)
        return
    except FileExistsError:
        pass
    mode = data_dir.stat().st_mode
    if not stat.S_ISDIR(mode):
        raise DataDirError(f"data dir {data_dir} is not a directory")
    if mode & 0o077 == 0:
        return
    if next(data_dir.iterdir(), None) is None:
        data_dir.chmod(DATA_DIR_MODE)
        return
    log.warning(
        "data dir %s may be entered by %s (mode %04o); fix with: chmod 700 %s",
        data_dir,
        "others" if mode & 0o007 else "its group",
        mode & 0o777,
        data_dir,
    )


def _write_network_key(data_dir: Path, key: bytes) -> None:
    path = network_path(data_dir)
    if path.exists():
        if load_network_key(data_dir) == key:
            return
        # The store may hold entries of that network; swapping keys would strand them.
        raise DataDirError(f"{path} already holds another network key; remove it first")
    write_atomically(path, (key.hex() + "\n").encode("ascii"), mode=SECRET_FILE_MODE)


def load_identity(data_dir: Path) -> Identity:
    """Read the secret key; IdentityMissing, SecretExposed or DataDirError when unusable."""
    path = secret_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise IdentityMissing(
            f"no identity in {data_dir} ({path} does not exist); run `meshnode init` first"
        ) from None
    except PermissionError:
        raise _denied(data_dir, path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # fdopen would refuse a directory with a bare "3: ..."
        os.close(fd)
        raise DataDirError(f"secret key {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        _check_secret_mode(path, mode)
        raw = f.read()
    try:
        document = json.loads(raw)
        if document.get("curve") != _CURVE:
            raise DataDirError(f"unsupported curve {document.get('curve')!r}")
        seed = base64.b64decode(document["seed"], validate=True)
        if len(seed) != KEY_BYTES:
            raise DataDirError(f"seed must be {KEY_BYTES} bytes, got {len(seed)}")
        identity = Identity(seed)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, DataDirError) as exc:
        raise DataDirError(f"secret key {path} is malformed: {exc}") from exc
    if document.get("public") != format_feed_id(identity.feed_id):
        raise DataDirError(f"secret key {path} is damaged: its public key does not match")
    return identity


def _denied(data_dir: Path, path: Path) -> DataDirDenied:
    """Why ``path`` may not be read, and the fix: join the data dir's group, or use sudo."""
    try:
        info = data_dir.stat()
        group = grp.getgrgid(info.st_gid)
        me = pwd.getpwuid(os.geteuid()).pw_name
    except (OSError, KeyError):
        return DataDirDenied(f"{path}: permission denied; use sudo", in_group=False)
    if info.st_gid not in {os.getegid(), *os.getgroups()}:
        joined = (
            "you are in it, but this login is older: log in again"
            if me in group.gr_mem
            else f"join it with `sudo usermod -aG {group.gr_name} $USER`, then log in again"
        )
        return DataDirDenied(
            f"{path}: permission denied: {data_dir} belongs to the {group.gr_name} group; "
            f"{joined} (or use sudo)",
            in_group=False,
        )
    return DataDirDenied(f"{path}: permission denied: only its owner reads it", in_group=True)


def _check_secret_mode(path: Path, mode: int) -> None:
    """Refuse a secret that group or others may read or write, as ssh does."""
    if mode & 0o077 == 0:
        return
    who = "others" if mode & 0o007 else "group"
    what = "readable" if mode & 0o044 else "writable"
    raise SecretExposed(
        f"secret key {path} is {what} by {who} (mode {mode & 0o777:04o}); "
        f"fix with: chmod 600 {path}"
    )


def load_network_key(data_dir: Path) -> bytes:
    """The data dir's network key; DEFAULT_NETWORK_KEY when no network file exists."""
    path = network_path(data_dir)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return DEFAULT_NETWORK_KEY
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirError(f"cannot read network key {path}: {exc}") from exc
    try:
        return parse_network_key(text)
    except DecodeError as exc:
        raise DataDirError(f"network key {path} is malformed: {exc}") from exc

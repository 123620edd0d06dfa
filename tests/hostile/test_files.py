"""Local files: keys stay private, planted links are never followed, only a socket is unlinked.

The rule: the data dir is 0700 and key files 0600, each mode given when the file is
created (never a chmod after); temporary files get a name nobody can guess and are created
O_EXCL|O_NOFOLLOW; nothing outside the data dir is written, cut or removed.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meshnode.store.files import write_atomically
from tests.daemons import DaemonPool, daemon_pool, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.unit.test_cli import Cli

VICTIM_BYTES = b"somebody else's file\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def no_umask() -> Iterator[None]:
    """umask 0: a mode that relies on the umask to be private shows it here."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside every data dir that nothing may touch."""
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM_BYTES)
    return path


def _untouched(victim: Path) -> None:
    assert victim.read_bytes() == VICTIM_BYTES
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]


# -- init: modes and planted links --------------------------------------------------------


@pytest.mark.usefixtures("no_umask")
def test_a_new_network_in_an_existing_data_dir_keeps_every_key_private(
    cli: Cli, home: Path
) -> None:
    data = home / "data"
    data.mkdir(mode=0o755)  # made for meshnode beforehand, e.g. by systemd or by hand
    result = cli("init", "--new-network", data=data)
    assert result.code == 0, result.err
    assert _mode(data) == 0o700
    assert _mode(data / "secret") == 0o600
    assert _mode(data / "network") == 0o600


@pytest.mark.usefixtures("no_umask")
def test_planted_links_in_the_data_dir_are_never_followed(
    cli: Cli, home: Path, victim: Path
) -> None:
    data = home / "data"
    data.mkdir(mode=0o755)
    guessable = [
        "network.tmp",
        ".network.tmp",
        f".network.{os.getpid()}.{threading.get_native_id()}.tmp",
    ]
    for name in guessable:
        (data / name).symlink_to(victim)
    (data / "dangling.tmp").symlink_to(victim.parent / "made-through-a-link")
    result = cli("init", "--new-network", data=data)
    assert result.code == 0, result.err
    _untouched(victim)
    assert all((data / name).is_symlink() for name in guessable)
    assert _mode(data / "network") == 0o600
    assert not (data / "network").is_symlink()
    # The folder held files already: not ours to chmod, but said.
    assert _mode(data) == 0o755
    assert f"fix with: chmod 700 {data}" in result.err


def test_a_secret_planted_as_a_link_is_refused(cli: Cli, home: Path, victim: Path) -> None:
    data = home / "data"
    data.mkdir(mode=0o700)
    (data / "secret").symlink_to(victim.parent / "new-secret")  # dangling: O_CREAT would follow
    result = cli("init", data=data)
    assert result.code == 1
    assert not (victim.parent / "new-secret").exists()
    _untouched(victim)


def test_a_lock_file_planted_as_a_link_is_refused(cli: Cli, home: Path, victim: Path) -> None:
    assert cli("init").code == 0
    assert cli("post", "hello").code == 0
    lock = home / "data" / "store" / "LOCK"
    lock.unlink()
    lock.symlink_to(victim)
    result = cli("feed")
    assert result.code == 1
    assert "LOCK" in result.err
    assert result.err.count("\n") == 1
    _untouched(victim)


# -- write_atomically, at the root -----------------------------------------------------------


def test_a_link_planted_under_the_temporary_name_is_not_written_through(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(names))
    (tmp_path / ".network.planted.tmp").symlink_to(victim)
    write_atomically(tmp_path / "network", b"key\n", mode=0o600)
    assert (tmp_path / "network").read_bytes() == b"key\n"
    assert (tmp_path / ".network.planted.tmp").is_symlink()
    _untouched(victim)


def test_when_every_name_is_taken_nothing_is_written(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "token_hex", lambda _n: "planted")
    (tmp_path / ".network.planted.tmp").symlink_to(victim.parent / "made-through-a-link")
    (tmp_path / "network").write_bytes(b"old\n")
    with pytest.raises(OSError, match="no free temporary name") as info:
        write_atomically(tmp_path / "network", b"new\n", mode=0o600)
    assert info.value.errno == errno.EEXIST
    assert (tmp_path / "network").read_bytes() == b"old\n"
    _untouched(victim)


@pytest.mark.usefixtures("no_umask")
def test_the_mode_is_given_at_creation_not_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("chmod after creation leaves a moment when others may read")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    write_atomically(tmp_path / "secretish", b"x", mode=0o600)
    assert _mode(tmp_path / "secretish") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secretish"]  # no temporary left


# -- doctor ----------------------------------------------------------------------------------


def _doctor(cli: Cli) -> dict[str, dict[str, str]]:
    report = json.loads(cli("doctor", "--json").out)
    return {f["check"]: f for f in report["findings"]}


def test_doctor_flags_keys_and_a_data_dir_others_can_read(cli: Cli, home: Path) -> None:
    data = home / "data"
    assert cli("init", "--new-network").code == 0
    found = _doctor(cli)
    assert found["data dir"]["level"] == "ok"
    assert found["network key"]["level"] == "ok"
    assert "private network" in found["network key"]["message"]

    (data / "network").chmod(0o644)
    data.chmod(0o755)
    (data / "secret").chmod(0o640)
    found = _doctor(cli)
    assert found["network key"]["level"] == "error"
    assert found["network key"]["fix"] == f"chmod 600 {data / 'network'}"
    assert "join this private network" in found["network key"]["message"]
    assert found["data dir"]["level"] == "error"
    assert found["data dir"]["fix"] == f"chmod 700 {data}"
    assert found["secret key"]["level"] == "error"
    assert found["secret key"]["fix"] == f"chmod 600 {data / 'secret'}"
    text = cli("doctor")
    assert text.code == 1
    assert f"fix: chmod 600 {data / 'network'}" in text.out

    data.chmod(0o750)  # the group may look in: said, not an error
    assert _doctor(cli)["data dir"]["level"] == "warn"


def test_doctor_on_the_public_network_has_no_network_key_to_flag(cli: Cli) -> None:
    assert cli("init").code == 0
    assert _doctor(cli)["network key"] == {
        "check": "network key",
        "level": "ok",
        "message": "the public default network",
        "fix": "",
    }


# -- the control socket ------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    with daemon_pool() as p:
        yield p


def _socket_config(pool: DaemonPool, path: Path) -> Path:
    config = pool.root / "socket.toml"
    config.write_text(f'[node]\ncontrol_socket = "{path}"\n')
    return config


def _run_once(pool: DaemonPool, config: Path) -> tuple[int, str]:
    port = str(free_port())
    done = pool.cli(
        pool.data("d"),
        *("run", "--no-mdns", "--no-web", "--listen", f"127.0.0.1:{port}"),
        pre=("--config", str(config)),
    )
    return done.returncode, done.stderr


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["file", "link", "folder"])
def test_a_control_socket_naming_something_else_removes_nothing(
    pool: DaemonPool, kind: str
) -> None:
    victim = pool.root / "precious.txt"
    victim.write_bytes(VICTIM_BYTES)
    target = {"file": victim, "link": pool.root / "link", "folder": pool.root / "folder"}[kind]
    if kind == "link":
        target.symlink_to(victim)
    elif kind == "folder":
        target.mkdir()
    code, err = _run_once(pool, _socket_config(pool, target))
    assert code == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"meshnode: error: cannot open the control socket {target}: something other than "
        "a socket is there; meshnode removes only a socket"
    )
    assert victim.read_bytes() == VICTIM_BYTES
    assert target.is_symlink() if kind == "link" else target.exists()


@pytest.mark.integration
def test_a_stale_socket_is_replaced_and_only_a_socket_removed_at_exit(pool: DaemonPool) -> None:
    path = pool.root / "c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # a killed daemon's: the file stays after close
    config = _socket_config(pool, path)
    daemon = pool.start("d", pre=("--config", str(config)))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    path.unlink()
    path.write_bytes(VICTIM_BYTES)  # replaced while it ran
    assert daemon.terminate() == 0
    assert path.read_bytes() == VICTIM_BYTES

"""systemd notify protocol: datagrams to $NOTIFY_SOCKET, the watchdog period, quiet failure."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meshnode.host.sdnotify import SD_LISTEN_FDS_START, Notifier, listen_fds

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def receiver() -> Iterator[tuple[str, socket.socket]]:
    """A bound AF_UNIX datagram socket at a short path (sun_path holds about 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="mn", dir="/tmp")
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.setblocking(False)  # every datagram is queued before notify() returns
        yield path, sock
    finally:
        sock.close()
        shutil.rmtree(directory)


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``."""
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


@pytest.mark.integration
def test_states_go_in_one_datagram(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled is True
    notifier.notify("READY=1", "STATUS=x")
    notifier.notify("WATCHDOG=1")
    assert received(sock) == [b"READY=1\nSTATUS=x", b"WATCHDOG=1"]


@pytest.mark.integration
def test_newlines_inside_a_state_are_replaced(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    Notifier({"NOTIFY_SOCKET": path}).notify("STATUS=two\nlines", "STOPPING=1")
    assert received(sock) == [b"STATUS=two lines\nSTOPPING=1"]


@pytest.mark.integration
def test_status_is_utf8(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    Notifier({"NOTIFY_SOCKET": path}).notify("STATUS=3 peers \u2014 ok")
    assert received(sock) == ["STATUS=3 peers \u2014 ok".encode()]


@pytest.mark.integration
def test_abstract_namespace_socket() -> None:
    name = f"meshnode-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled is True
        notifier.notify("READY=1")
        assert received(sock) == [b"READY=1"]


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "1000000"}])
def test_without_notify_socket_nothing_is_sent(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(env)
    assert notifier.enabled is False
    assert notifier.watchdog_period_s is None
    with caplog.at_level(logging.DEBUG):
        notifier.notify("READY=1")
    assert caplog.records == []


@pytest.mark.integration
def test_without_notify_socket_the_receiver_gets_nothing(
    receiver: tuple[str, socket.socket],
) -> None:
    _, sock = receiver
    Notifier({}).notify("READY=1")
    assert received(sock) == []


def _env(**values: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": "/run/systemd/notify", **values}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (_env(WATCHDOG_USEC="30000000"), 15.0),
        (_env(WATCHDOG_USEC="1"), 0.0000005),
        (_env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid())), 15.0),
        (_env(WATCHDOG_USEC="30000000", WATCHDOG_PID=""), 15.0),
    ],
)
def test_watchdog_period_is_half_the_timeout(env: dict[str, str], expected: float) -> None:
    assert Notifier(env).watchdog_period_s == expected


@pytest.mark.parametrize(
    "env",
    [
        _env(),
        _env(WATCHDOG_USEC=""),
        _env(WATCHDOG_USEC="0"),
        _env(WATCHDOG_USEC="garbage"),
        _env(WATCHDOG_USEC="-5"),
        _env(WATCHDOG_USEC="1.5"),
        _env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1)),
        _env(WATCHDOG_USEC="30000000", WATCHDOG_PID="1"),
        _env(WATCHDOG_USEC="30000000", WATCHDOG_PID="garbage"),
        {"WATCHDOG_USEC": "30000000"},  # no socket: nothing to ping
    ],
)
def test_no_watchdog(env: dict[str, str]) -> None:
    assert Notifier(env).watchdog_period_s is None


def test_missing_socket_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    directory = tempfile.mkdtemp(prefix="mn", dir="/tmp")
    try:
        path = str(Path(directory) / "absent")
        notifier = Notifier({"NOTIFY_SOCKET": path})
        with caplog.at_level(logging.WARNING, logger="meshnode.host.sdnotify"):
            notifier.notify("READY=1")
            notifier.notify("STATUS=still nobody")
            notifier.notify("STOPPING=1")
    finally:
        shutil.rmtree(directory)
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("meshnode.host.sdnotify", logging.WARNING)
    ]
    assert caplog.records[0].getMessage().startswith(f"cannot notify systemd at {path}: ")


@pytest.mark.parametrize(
    "env",
    [_env(WATCHDOG_USEC="\u00b2"), _env(WATCHDOG_USEC="30000000", WATCHDOG_PID="\u00b2")],
)
def test_non_ascii_digits_mean_no_watchdog(env: dict[str, str]) -> None:
    assert Notifier(env).watchdog_period_s is None


def test_listen_fds_takes_only_sockets_meant_for_this_process() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    assert listen_fds(env) == {}
    assert env == {}  # never passed on to children either
    assert listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"}) == {}
    assert listen_fds({}) == {}


_CHILD = """
import json, os, socket
from meshnode.host.sdnotify import SD_LISTEN_FDS_START, listen_fds
first, second = socket.socket(), socket.socket()
os.dup2(first.fileno(), SD_LISTEN_FDS_START)
os.dup2(second.fileno(), SD_LISTEN_FDS_START + 1)
env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:"}
found = listen_fds(env)
print(json.dumps([found, os.get_inheritable(SD_LISTEN_FDS_START), env]))
"""


def test_listen_fds_names_each_passed_socket() -> None:
    # In a child: fds 3 and 4 of this test process may belong to pytest.
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=30, check=True
    )
    found, inheritable, env = json.loads(done.stdout)
    assert found == {"web": SD_LISTEN_FDS_START, "unknown": SD_LISTEN_FDS_START + 1}
    assert inheritable is False
    assert env == {}

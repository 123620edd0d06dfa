"""Throwaway network namespaces for tests that send multicast (mDNS) without touching the host.

Needs root and iproute2; tests are skipped with the reason otherwise. Every namespace is
deleted on exit, even when the test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ip", "netns_exec", "network_namespace"]

_IP_TIMEOUT_S = 10.0
_counter = itertools.count()


def _ip_binary() -> str:
    """Path of ``ip``, or skip the test."""
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("network namespace test: `ip` (iproute2) is not installed")
    return found


def ip(*args: str) -> None:
    """Run ``ip ARGS``; raise with its stderr when it fails."""
    done = subprocess.run(
        [_ip_binary(), *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def netns_exec(name: str, *argv: str) -> list[str]:
    """Command line running ``argv`` inside namespace ``name``."""
    return [_ip_binary(), "netns", "exec", name, *argv]


@contextlib.contextmanager
def network_namespace(prefix: str = "mn-test", *, loopback_up: bool = True) -> Iterator[str]:
    """A fresh namespace (named with our pid), ``lo`` up; skip if impossible; deleted after."""
    if os.geteuid() != 0:
        pytest.skip("network namespace test: needs root (ip netns add)")
    binary = _ip_binary()
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    added = subprocess.run(
        [binary, "netns", "add", name],
        capture_output=True,
        text=True,
        timeout=_IP_TIMEOUT_S,
        check=False,
    )
    if added.returncode != 0:
        pytest.skip(f"network namespace test: `ip netns add` failed: {added.stderr.strip()}")
    try:
        if loopback_up:
            ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(
            [binary, "netns", "delete", name],
            capture_output=True,
            timeout=_IP_TIMEOUT_S,
            check=False,
        )

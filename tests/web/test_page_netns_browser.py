"""The village page on a phone that reaches the box over a real link, not loopback.

Two throwaway network namespaces, box and phone, joined by a veth pair with addresses from
the documentation range (RFC 5737). `meshnode run` serves the page in the box namespace at
192.0.2.1; headless phone-sized Chromium and its chromedriver run in the phone namespace
(``tests/web/phone_netns.py``, a child process, since selenium talks to chromedriver and
chromedriver to Chromium over the namespace's own loopback). Plain HTTP from a non-loopback
address is not a secure context, so the page runs without WebCrypto exactly as on a phone,
with no ``--host-resolver-rules`` trick. Needs root, iproute2, chromium, chromedriver and
selenium; skipped with the reason otherwise. The veth is created inside the namespaces (it
never appears in the host's) and goes with them; the test checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemons import daemon_pool, wait_for
from tests.netns import ip, netns_exec, network_namespace
from tests.web.conftest import _browser_binaries

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
BOX_IP, PHONE_IP = "192.0.2.1", "192.0.2.2"  # TEST-NET-1, RFC 5737
WEB_PORT = 8080  # fixed: the box namespace is fresh, so nothing else can hold it
PAGE_URL = f"http://{BOX_IP}:{WEB_PORT}/"
TEXT = "hello over the veth"
PAGE_START_TIMEOUT_S = 10.0
# The phone's own waits add up to 30 s; this one also covers Chromium's start.
PHONE_TIMEOUT_S = 40.0
GONE_TIMEOUT_S = 5.0
LINK_TIMEOUT_S = 5.0


def _netns_id(name: str) -> tuple[int, int]:
    """(device, inode) of a named namespace, as /proc/PID/ns/net shows it for its members."""
    st = Path("/run/netns", name).stat()
    return st.st_dev, st.st_ino


def _members(namespaces: set[tuple[int, int]]) -> list[int]:
    """Pids of processes in any of ``namespaces`` (what keeps a deleted one, and its veth)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # it exited, or is not ours to see
                st = (entry / "ns" / "net").stat()
                if (st.st_dev, st.st_ino) in namespaces:
                    pids.append(int(entry.name))
    return pids


def _up(namespace: str, dev: str) -> bool | None:
    """True once ``dev`` carries traffic (both ends up: the kernel has attached its queue)."""
    done = subprocess.run(
        netns_exec(namespace, "cat", f"/sys/class/net/{dev}/operstate"),
        capture_output=True,
        text=True,
        timeout=LINK_TIMEOUT_S,
        check=True,
    )
    return done.stdout.strip() == "up" or None


def _in_host(dev: str) -> bool:
    """True if the host's (our) namespace has an interface named ``dev``."""
    try:
        socket.if_nametoindex(dev)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def linked_namespaces() -> Iterator[tuple[str, str]]:
    """Box and phone namespaces joined by a veth pair; on exit, check that nothing is left."""
    veth_box, veth_phone = f"mnb{os.getpid()}", f"mnp{os.getpid()}"  # < 16 characters
    namespaces: set[tuple[int, int]] = set()
    try:
        with network_namespace("mn-box") as box, network_namespace("mn-phone") as phone:
            namespaces |= {_netns_id(box), _netns_id(phone)}
            veth = [veth_box, "type", "veth", "peer", "name", veth_phone, "netns", phone]
            ip("-n", box, "link", "add", *veth)
            for ns, dev, address in ((box, veth_box, BOX_IP), (phone, veth_phone, PHONE_IP)):
                ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
                ip("-n", ns, "link", "set", dev, "up")
            for ns, dev in ((box, veth_box), (phone, veth_phone)):
                wait_for(f"{dev} to be up", functools.partial(_up, ns, dev), LINK_TIMEOUT_S)
            yield box, phone
    finally:
        if namespaces:  # else no namespace was made (the test was skipped)
            # A deleted namespace lives on while a process is in it; the veth with it.
            wait_for(
                "no process left in the test's namespaces",
                lambda: not _members(namespaces) or None,
                GONE_TIMEOUT_S,
            )
            in_host = [dev for dev in (veth_box, veth_phone) if _in_host(dev)]
            assert not in_host, f"veth left in the host's namespace: {in_host}"


def run_phone(namespace: str, url: str, text: str) -> dict[str, Any]:
    """Run tests/web/phone_netns.py in ``namespace``; its report (it failed if ``error``)."""
    proc = subprocess.Popen(
        netns_exec(namespace, sys.executable, "-m", "tests.web.phone_netns", url, text),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Chromium and chromedriver are in it
    )
    try:
        out, err = proc.communicate(timeout=PHONE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=GONE_TIMEOUT_S)
        pytest.fail(f"the phone took over {PHONE_TIMEOUT_S:g} s\n{out}\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # a Chromium left behind
            os.killpg(proc.pid, signal.SIGKILL)
    lines = out.splitlines()
    assert lines, f"the phone printed nothing (exit {proc.returncode}):\n{err}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0, f"the phone failed: {report}\n{err}"
    return report


def test_a_phone_over_a_veth_link_signs_with_tweetnacl_and_the_box_keeps_its_post() -> None:
    pytest.importorskip("selenium", reason="browser test: selenium not installed (test extras)")
    _browser_binaries()
    with linked_namespaces() as (box, phone), daemon_pool() as pool:
        a, _ = pool.init("a")
        daemon = pool.start("a", "--web", f"{BOX_IP}:{WEB_PORT}", wrap=netns_exec(box))
        wait_for(
            "the page on the veth address",
            lambda: f"page on {PAGE_URL}" in daemon.stderr() or None,
            PAGE_START_TIMEOUT_S,
        )

        seen = run_phone(phone, PAGE_URL, TEXT)

        assert seen["href"] == PAGE_URL
        assert seen["isSecureContext"] is False
        assert seen["subtle"] == "undefined"
        assert seen["serviceWorker"] == "undefined"
        assert seen["signer"] == "tweetnacl"
        assert TEXT in seen["timeline"]
        phone_id = seen["meId"]
        assert phone_id.startswith("@")
        assert phone_id.endswith(".ed25519")
        assert [e["text"] for e in pool.feed(a, phone_id)] == [TEXT]

"""The village page is announced by mDNS as _http._tcp with the box's name (in a namespace)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshnode.links.discovery import page_instance_name
from tests.netns import netns_exec, network_namespace

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# Announces a node with its page, browses _http._tcp, prints what it resolves, and stops.
_CHILD = """
import asyncio, json, sys
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from meshnode.links.discovery import HTTP_SERVICE_TYPE, MdnsDiscovery
from tests.fakes import identity

async def main():
    node = MdnsDiscovery(feed_id=identity(1).feed_id, network_key=bytes(32), port=7001,
                         on_seen=lambda seen: None, interfaces=["127.0.0.1"],
                         page=("Village Box. North", 8080))
    task = asyncio.create_task(node.run())
    found = asyncio.get_running_loop().create_future()
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"])

    async def resolve(name):
        info = AsyncServiceInfo(HTTP_SERVICE_TYPE, name)
        if await info.async_request(browser_zc.zeroconf, 3000) and not found.done():
            found.set_result({"name": name, "port": info.port, "server": info.server,
                              "addresses": info.parsed_addresses(),
                              "path": info.properties.get(b"path", b"").decode()})

    def changed(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added:
            asyncio.ensure_future(resolve(name))

    browser = AsyncServiceBrowser(browser_zc.zeroconf, HTTP_SERVICE_TYPE, handlers=[changed])
    try:
        print(json.dumps(await asyncio.wait_for(found, 8)), flush=True)
    finally:
        await browser.async_cancel()
        await browser_zc.async_close()
        task.cancel()

asyncio.run(main())
"""


def test_the_page_is_found_by_its_box_name() -> None:
    with network_namespace("mn-page") as namespace:
        done = subprocess.run(
            netns_exec(namespace, sys.executable, "-c", _CHILD),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["name"] == "Village Box North._http._tcp.local."
    assert found["port"] == 8080
    assert found["path"] == "/"
    assert found["addresses"] == ["127.0.0.1"]
    assert found["server"].startswith("mn-")


@pytest.mark.parametrize(
    ("box_name", "instance"),
    [
        ("", "meshnode"),
        ("a.b", "ab"),
        ("x" * 80, "x" * 63),
        ("é" * 40, "é" * 31),
        ("\x00 ", "meshnode"),
    ],
)
def test_thepage_instance_name_is_a_valid_dns_sd_label(box_name: str, instance: str) -> None:
    assert page_instance_name(box_name) == instance

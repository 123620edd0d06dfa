"""CLI commands on the node as a whole: init, whoami, status, check, compact, config, run, peers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from meshnode.cli.context import (
    Progress,
    emit_json,
    format_bytes,
    open_access,
    open_node,
    open_store,
)
from meshnode.cli.usb import last_usb_sync
from meshnode.daemon.control import find_daemon
from meshnode.daemon.service import Service, ServiceSettings
from meshnode.errors import DecodeError, MeshnodeError
from meshnode.host.address import parse_host_port, parse_peer
from meshnode.host.config import EXAMPLE_CONFIG
from meshnode.host.datadir import (
    IdentityMissing,
    config_file_path,
    init_data_dir,
    load_identity,
    load_network_key,
)
from meshnode.host.sdnotify import Notifier, listen_fds
from meshnode.links.tcp import TcpSettings
from meshnode.secure.identity import format_feed_id, network_tag, parse_network_key
from meshnode.store.flatfile import FileStore
from meshnode.web.poster import PosterSettings
from meshnode.web.server import WebSettings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine

    from meshnode.cli.context import Context
    from meshnode.core.node import Node
    from meshnode.links.discovery import PeerSeen
    from meshnode.secure.identity import Identity

__all__ = ["add_node_commands"]

log = logging.getLogger(__name__)

# Human status lists at most this many feed ranges; --json lists them all.
_STATUS_RANGES = 20


def add_node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register init, whoami, status, check, compact, config and run."""
    p = sub.add_parser("init", help="create the data dir and a new identity")
    net = p.add_mutually_exclusive_group()
    net.add_argument("--network-key", metavar="HEX", help="join a private network (64 hex)")
    net.add_argument("--new-network", action="store_true", help="start a new private network")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_init)
    for name, func, text in [
        ("whoami", cmd_whoami, "print our id, data dir and network tag"),
        ("status", cmd_status, "sizes, caps in force and the ranges held"),
        ("check", cmd_check, "verify every stored entry (exit 1 on any problem)"),
        ("compact", cmd_compact, "reclaim the space of evicted entries"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=func)
    p = sub.add_parser("config", help="validate and print the config in force")
    p.add_argument("--example", action="store_true", help="print a commented example file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("run", help="run the node: TCP links, mDNS, control socket")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (lan.listen)")
    p.add_argument(
        "--peer",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="a peer to dial, HOST:PORT or HOST:PORT@ID (repeatable; adds to lan.peers)",
    )
    p.add_argument("--no-mdns", action="store_true", help="do not announce or browse by mDNS")
    p.add_argument("--web", metavar="HOST:PORT", help="serve the village page there (web.listen)")
    p.add_argument("--no-web", action="store_true", help="do not serve the village page")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("peers", help="known and connected peers (needs the daemon)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_peers)


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    """Create the data dir and identity; exit 1, changing nothing, if one exists."""
    key: bytes | None = None
    if args.new_network:
        key = secrets.token_bytes(32)
    elif args.network_key is not None:
        try:
            key = parse_network_key(args.network_key)
        except DecodeError as exc:
            raise MeshnodeError(f"--network-key: {exc}") from exc
    identity = init_data_dir(ctx.data_dir, key)
    info = _whoami(ctx, identity)
    if args.json:
        emit_json({**info, "network_key": key.hex()} if args.new_network and key else info)
        return 0
    print(f"created identity {info['id']}")
    print(f"data dir {info['data']}, network {info['network']}")
    if args.new_network and key is not None:
        print(f"new network key (share it with your community): {key.hex()}")
    return 0


def _whoami(ctx: Context, identity: Identity) -> dict[str, str]:
    tag = network_tag(load_network_key(ctx.data_dir))
    return {"id": format_feed_id(identity.feed_id), "data": str(ctx.data_dir), "network": tag}


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    """Print id, data dir and network tag; needs no store, so it works beside `run`."""
    info = _whoami(ctx, load_identity(ctx.data_dir))
    if args.json:
        emit_json(info)
    else:
        print(f"id      {info['id']}\ndata    {info['data']}\nnetwork {info['network']}")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    """Print the node's status."""
    with open_access(ctx) as access:
        status = {**access.call("status"), "data": str(ctx.data_dir)}
    status["config"] = ctx.describe_config()
    status["disk"] = _disk(ctx, status)
    status["last_usb_sync"] = last_usb_sync(ctx.data_dir)
    if args.json:
        emit_json(status)
    else:
        _print_status(status)
    return 0


def _disk(ctx: Context, status: dict[str, object]) -> dict[str, object]:
    """The store's size against its cap, and the room left on the data dir's filesystem."""
    usage = shutil.disk_usage(ctx.data_dir)
    return {
        "store_bytes": status.get("file_bytes"),
        "global_cap_bytes": ctx.config.policy.global_cap_bytes or None,
        "free_bytes": usage.free,
        "total_bytes": usage.total,
    }


def _print_status(status: dict[str, object]) -> None:
    caps = status.get("caps")
    ranges = status.get("ranges")
    forked = status.get("forked")
    print(f"id       {status['id']}  (network {status.get('network')})")
    print(f"data     {status['data']}\nconfig   {status['config']}")
    daemon = status.get("daemon")
    if isinstance(daemon, dict):
        listening = "listening on " + ", ".join(str(a) for a in daemon.get("listening", []))
        if daemon.get("waiting_for"):
            listening = f"waiting for {daemon['waiting_for']} (not on this box yet)"
        print(f"daemon   pid {daemon['pid']}, up {_duration(daemon['uptime_s'])}, {listening}")
        by_link = daemon.get("peers_by_link")
        if isinstance(by_link, dict):
            print("peers    " + ", ".join(f"{n} {link}" for link, n in by_link.items()))
        backlog = daemon.get("backlog")
        if isinstance(backlog, dict):
            print(
                f"backlog  {backlog.get('to_receive', 0)} entries to receive from peers, "
                f"{backlog.get('radio_to_send', 0)} feeds queued on radios"
            )
        radios = daemon.get("radios")
        for radio in radios if isinstance(radios, list) else []:
            print("radio    " + _radio_line(radio))
    else:
        print("daemon   not running")
    size = format_bytes(_int(status["bytes"]))
    print(f"stored   {status['entries']} entries of {status['feeds']} feeds, {size}")
    disk = status.get("disk")
    if isinstance(disk, dict):
        cap = disk.get("global_cap_bytes")
        of_cap = f" of {format_bytes(_int(cap))} cap" if cap else " (no global cap)"
        print(
            f"disk     {format_bytes(_int(disk.get('store_bytes')))} on disk{of_cap}, "
            f"{format_bytes(_int(disk.get('free_bytes')))} free"
        )
    print(f"contacts {status.get('follows')} followed, {status.get('blocks')} blocked")
    mailbox = status.get("mailbox")
    if isinstance(mailbox, dict):
        print(
            f"mailbox  {mailbox.get('kept_entries')} private entries kept past the caps, "
            f"{format_bytes(_int(mailbox.get('held_bytes')))} of "
            f"{format_bytes(_int(mailbox.get('max_bytes')))}"
        )
    usb = status.get("last_usb_sync")
    if isinstance(usb, dict):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(_int(usb.get("at_ms")) / 1000))
        print(
            f"usb      last sync {when} with {usb.get('drive')}: "
            f"{usb.get('from_drive')} entries in, {usb.get('to_drive')} out"
        )
    if isinstance(caps, dict):
        print("caps     " + ", ".join(f"{k} {v or 'none'}" for k, v in caps.items()))
    if isinstance(forked, list) and forked:
        print("forked   " + ", ".join(f"{f['feed']} at #{f['seq']}" for f in forked))
    if isinstance(ranges, dict):
        for feed, held in list(ranges.items())[:_STATUS_RANGES]:
            print(f"  {feed}  #{held['first']}..#{held['latest']}  hops {held['hops']}")
        if len(ranges) > _STATUS_RANGES:
            print(f"  ... and {len(ranges) - _STATUS_RANGES} more feeds (see --json)")


def _radio_line(radio: dict[str, object]) -> str:
    """``lora (kiss, open): 3 neighbours, airtime 2.1/36.0 s, backlog 4``."""
    neighbours = radio.get("neighbours")
    count = len(neighbours) if isinstance(neighbours, list) else 0
    line = f"{radio.get('name')} ({radio.get('driver')}, {radio.get('state')}): {count} neighbours"
    limit = radio.get("airtime_limit_s")
    if "airtime_used_s" in radio:
        shown = f"{limit:g} s" if isinstance(limit, int | float) else "no duty limit"
        line += f", airtime {radio['airtime_used_s']} s of {shown} this hour"
    line += f", backlog {radio.get('serving', 0)}"
    problem = radio.get("problem")
    return line + f"\n    problem: {problem}" if problem else line


def _duration(seconds: object) -> str:
    s = int(seconds) if isinstance(seconds, int | float) else 0
    return (
        f"{s // 86400}d {s % 86400 // 3600}h"
        if s >= 86400
        else f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"
    )


def cmd_peers(ctx: Context, args: argparse.Namespace) -> int:
    """List known and connected peers; without the daemon, only the configured ones."""
    client = find_daemon(ctx.control_path())
    if client is None:
        configured = list(ctx.config.lan.peers)
        if args.json:
            emit_json({"running": False, "peers": [], "configured": configured})
        else:
            print("the daemon is not running (meshnode run); no live peer information")
            for peer in configured:
                print(f"configured  {peer}")
        return 0
    answer = client.call("peers")
    peers, radios = answer.get("peers", []), answer.get("radios", [])
    if args.json:
        emit_json({"running": True, "peers": peers, "radios": radios})
        return 0
    for radio in radios if isinstance(radios, list) else []:
        print("radio    " + _radio_line(radio))  # airtime and backlog of each interface
    if not isinstance(peers, list) or not peers:
        print("no peers known yet")
        return 0
    print(
        f"{'peer':<14} {'link':<5} {'state':<10} {'address':<24} {'rtt':>8} "
        f"{'in':>10} {'out':>10} {'entries':>8} {'behind':>7}"
    )
    for p in peers:
        state = (
            f"{p['direction']}bound"
            if p.get("direction")
            else "heard"
            if p["connected"]
            else "known"
        )
        rtt = f"{p['rtt_ms']:.1f}ms" if p.get("rtt_ms") is not None else "-"
        behind = p["behind"] if p.get("behind") is not None else "-"
        print(
            f"{str(p['id'])[:13]:<14} {p['link']:<5} {state:<10} {p['address']!s:<24} "
            f"{rtt:>8} {_size(p['bytes_in']):>10} {_size(p['bytes_out']):>10} "
            f"{p['entries_in']!s:>8} {behind!s:>7}"
        )
        if p.get("last_error") and not p["connected"]:
            print(f"{'':<14} last error: {p['last_error']}")
    return 0


def _size(value: object) -> str:
    return format_bytes(value) if isinstance(value, int) else "-"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    """Verify every stored entry, then walk the log for damage; exit 1 on any problem."""
    with open_node(ctx) as node:
        total = node.store.stats().entries
        progress = Progress("checked", total, enabled=not ctx.quiet, tty_only=True)
        report = node.check(progress.update)
        progress.finish()
        named = [{"feed": p.feed, "seq": p.seq, "reason": p.reason} for p in report.problems]
        problems = named + _log_problems(node, {(p.feed, p.seq) for p in report.problems})
    if args.json:
        emit_json({**report.to_json(), "ok": not problems, "problems": problems})
    else:
        for p in problems:
            where = f"{p['feed']} #{p['seq']}" if p["feed"] is not None else "log"
            print(f"{where}: {p['reason']}")
        for fork in report.forked:
            print(f"note: feed {fork['feed']} forked at #{fork['seq']} (proof kept)")
        verdict = f"{len(problems)} problems" if problems else "ok"
        print(f"{verdict}: {report.entries} entries checked")
    return 1 if problems else 0


def _log_problems(node: Node, named: set[tuple[str, int]]) -> list[dict[str, object]]:
    """Damage a walk of the log finds that the entry-by-entry check did not name."""
    # A rebuilt index knows nothing of a lost first or latest entry of a feed, so only
    # the log itself shows that damage.
    if not isinstance(node.store, FileStore):
        return []
    out: list[dict[str, object]] = []
    for p in node.store.verify_log():
        feed = format_feed_id(p.feed) if p.feed is not None else None
        if feed is not None and p.seq is not None:
            if (feed, p.seq) in named:
                continue
            named.add((feed, p.seq))
        where = p.path if p.pos is None else f"{p.path} position {p.pos}"
        out.append({"feed": feed, "seq": p.seq, "reason": f"{p.reason} at {where}"})
    return out


def cmd_compact(ctx: Context, args: argparse.Namespace) -> int:
    """Reclaim the space of evicted entries."""
    # Compaction is the store's job alone; it needs no identity or node.
    with open_store(ctx) as store:
        reclaimed = store.compact()
    if args.json:
        emit_json({"reclaimed_bytes": reclaimed})
    else:
        print(f"reclaimed {format_bytes(reclaimed)}")
    return 0


def cmd_config(ctx: Context, args: argparse.Namespace) -> int:
    """Print the config in force (it was validated on load), or the example file."""
    if args.example:
        print(EXAMPLE_CONFIG, end="")
        return 0
    sections = {
        name: dataclasses.asdict(getattr(ctx.config, name))
        for name in ("node", "store", "policy", "lan", "usb")
    }
    if args.json:
        radios = [dataclasses.asdict(radio) for radio in ctx.config.radios]
        emit_json({"source": ctx.describe_config(), **sections, "radio": radios})
        return 0
    print(f"# {ctx.describe_config()}")
    tables = [(f"[{name}]", values) for name, values in sections.items()]
    tables += [("[[radio]]", dataclasses.asdict(radio)) for radio in ctx.config.radios]
    for title, values in tables:
        print(f"\n{title}")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")  # JSON strings and ints are valid TOML
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT (creating an identity on first start)."""
    settings = _service_settings(ctx, args)
    mdns = ctx.config.lan.mdns and not args.no_mdns
    wanted = {signal.SIGTERM, signal.SIGINT}
    # Block first: a signal during startup then waits for the daemon's handler.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    for sig in wanted:
        # The daemon's own handlers take over while it runs. Before that (opening the
        # store) and after it (flush, close, interpreter exit) a signal must not kill us
        # half-way, nor turn a clean stop into exit status -15: this process is on its
        # way out, so the handlers are not restored.
        signal.signal(sig, signal.SIG_IGN)
    try:
        identity = _identity_or_init(ctx)
        with open_node(ctx, identity) as node:
            print(f"id      {format_feed_id(node.feed_id)}", flush=True)
            print(f"data    {ctx.data_dir}\nconfig  {ctx.describe_config()}", flush=True)
            service = Service(
                node,
                identity,
                settings,
                notifier=Notifier(os.environ),
                control_path=ctx.control_path(),
                discovery=_mdns(node, settings.web) if mdns else None,
            )
            asyncio.run(service.run())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return 0


def _service_settings(ctx: Context, args: argparse.Namespace) -> ServiceSettings:
    lan = ctx.config.lan
    web = ctx.config.web
    try:
        host, port = parse_host_port(args.listen or lan.listen, any_port=True)
        peers = [parse_peer(p) for p in (*lan.peers, *args.peer)]
        web_host, web_port = parse_host_port(args.web or web.listen, any_port=True)
    except DecodeError as exc:
        raise MeshnodeError(f"bad address: {exc}") from None
    page = None
    if web.enabled and not args.no_web:
        # Under systemd, meshnode-web.socket holds port 80 for us: no capability needed.
        fd = None if args.web else listen_fds(os.environ).get("web")
        if fd is not None:
            with socket.socket(fileno=os.dup(fd)) as passed:
                web_port = int(passed.getsockname()[1])
        page = WebSettings(
            host=web_host,
            port=web_port,
            box_name=web.box_name,  # empty: the box's own ABOUT name, else the host name
            fd=fd,
            data_dir=ctx.data_dir,
            # Both or neither: the config checked it.
            tls_cert=config_file_path(ctx.config, web.tls_cert) if web.tls_cert else None,
            tls_key=config_file_path(ctx.config, web.tls_key) if web.tls_key else None,
            poster=PosterSettings(
                wifi_ssid=web.wifi_ssid, wifi_password=web.wifi_password, page_url=web.page_url
            ),
        )
    return ServiceSettings(
        listen_host=host,
        listen_port=port,
        peers=tuple(peers),
        tcp=TcpSettings(
            handshake_timeout_s=lan.handshake_timeout_s, idle_timeout_s=lan.idle_timeout_s
        ),
        max_connections=lan.max_connections,
        reserved_share=lan.reserved_share,
        max_connections_per_address=lan.max_connections_per_address,
        reconnect_min_s=lan.reconnect_min_s,
        reconnect_max_s=lan.reconnect_max_s,
        radios=ctx.config.radios,
        web=page,
        data_dir=ctx.data_dir,
    )


def _mdns(
    node: Node, web: WebSettings | None
) -> Callable[[Callable[[PeerSeen], None], int], Coroutine[Any, Any, None]]:
    """Discovery for the daemon: announce on every interface, report nodes of our network.

    The village page is announced too (``_http._tcp``, or ``_https._tcp`` with TLS, by the
    box's name) when it listens on a fixed port.
    """
    from meshnode.links.discovery import MdnsDiscovery  # zeroconf loads only when it is used

    name = (web.box_name or socket.gethostname()) if web is not None else ""
    page = (name, web.port) if web is not None and web.port else None

    def run(on_seen: Callable[[PeerSeen], None], port: int) -> Coroutine[Any, Any, None]:
        discovery = MdnsDiscovery(
            feed_id=node.feed_id,
            network_key=node.network_key,
            port=port,
            on_seen=on_seen,
            page=page,
            page_tls=web is not None and web.tls_cert is not None,
        )
        return discovery.run()

    return run


def _identity_or_init(ctx: Context) -> Identity:
    try:
        return load_identity(ctx.data_dir)
    except IdentityMissing:
        identity = init_data_dir(ctx.data_dir, None)
        log.info("created identity %s in %s", format_feed_id(identity.feed_id), ctx.data_dir)
        return identity

"""``meshnode doctor [--json]``: check the box's set-up; exit 1 when something is wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshnode.cli.checks import Finding, check_all, check_config_error
from meshnode.cli.context import emit_json
from meshnode.daemon.control import DaemonError, find_daemon

if TYPE_CHECKING:
    import argparse

    from meshnode.cli.context import Context

__all__ = ["add_doctor_command", "doctor_bad_config"]

_MARK = {"ok": "ok   ", "warn": "WARN ", "error": "ERROR"}


def add_doctor_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor``."""
    p = sub.add_parser("doctor", help="check config, keys, radios, mDNS, disk, clock, service")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_doctor, on_bad_config=doctor_bad_config)


def cmd_doctor(ctx: Context, args: argparse.Namespace) -> int:
    """Run every check and report."""
    daemon = None
    client = find_daemon(ctx.control_path())
    if client is not None:
        try:
            status = client.call("status").get("daemon")
        except DaemonError:
            status = None
        daemon = status if isinstance(status, dict) else None
    findings = check_all(ctx.config, ctx.describe_config(), ctx.data_dir, daemon)
    return _report(findings, json=args.json)


def doctor_bad_config(where: str, error: Exception, args: argparse.Namespace) -> int:
    """A config that does not load is the one finding (the rest depends on it)."""
    return _report([check_config_error(where, error)], json=args.json)


def _report(findings: list[Finding], *, json: bool) -> int:
    failed = any(f.level == "error" for f in findings)
    if json:
        emit_json({"ok": not failed, "findings": [f.to_json() for f in findings]})
        return 1 if failed else 0
    for f in findings:
        print(f"{_MARK[f.level]} {f.check:<12} {f.message}")
        if f.fix:
            print(f"{'':<6} {'':<12} fix: {f.fix}")
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    counted = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    print(f"\n{counted}" if errors or warnings else "\nall good")
    return 1 if failed else 0

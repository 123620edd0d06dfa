"""The ``meshnode`` command: argparse, logging, and mapping errors to exit codes.

Data goes to stdout, logs and errors to stderr. Exit codes: 0 ok, 1 failure or problem
found, 2 usage, 78 (EX_CONFIG) bad config. Expected errors print one line
``meshnode: error: ...``, never a traceback. The commands live in cli_node, cli_feed and
cli_bundle; this module wires them up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from typing import TYPE_CHECKING, TextIO, cast

from meshnode import __version__
from meshnode.cli.bundle import add_bundle_commands
from meshnode.cli.context import build_context
from meshnode.cli.doctor import add_doctor_command
from meshnode.cli.feed import add_feed_commands
from meshnode.cli.node import add_node_commands
from meshnode.cli.private import add_private_commands
from meshnode.cli.sim import add_sim_commands
from meshnode.cli.terminal import VisibleStream, one_line
from meshnode.cli.usb import add_usb_commands
from meshnode.cli.web import add_web_commands
from meshnode.errors import ConfigError, MeshnodeError
from meshnode.host.datadir import resolve_config_path
from meshnode.host.eventlog import RateLimitedHandler

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_USAGE", "build_parser", "main"]

log = logging.getLogger("meshnode.cli.main")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # os.EX_CONFIG; the systemd unit's RestartPreventExitStatus=78 honours it
_EXIT_INTERRUPTED = 130
# An error is one line a person reads; past this it quotes a value too big to help.
_MAX_ERROR_CHARS = 2000

# journald reads a "<N>" syslog priority prefix on each line (SyslogLevelPrefix=yes).
_JOURNAL_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global options, then one subcommand."""
    parser = argparse.ArgumentParser(
        prog="meshnode",
        description="Offline-first mesh node in the Secure Scuttlebutt family.",
        epilog="Global options go before the command: meshnode --data DIR post hello",
    )
    parser.add_argument("--data", metavar="DIR", help="data directory (identity and store)")
    parser.add_argument("--config", metavar="FILE", help="config file (TOML)")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeatable)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="less log output and no progress"
    )
    parser.add_argument("--version", action="version", version=f"meshnode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_node_commands(sub)
    add_feed_commands(sub)
    add_private_commands(sub)
    add_bundle_commands(sub)
    add_sim_commands(sub)
    add_usb_commands(sub)
    add_web_commands(sub)
    add_doctor_command(sub)
    return parser


class _VisibleFormatter(logging.Formatter):
    """One line per event: a message's control characters (a peer's text) are escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


class _JournalFormatter(_VisibleFormatter):
    """``<N>name: message``, for stderr that is the journal."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def _stderr_is_journal(env: Mapping[str, str]) -> bool:
    """True when stderr is the stream systemd named in $JOURNAL_STREAM (dev:inode)."""
    expected = env.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def _setup_logging(args: argparse.Namespace, env: Mapping[str, str]) -> logging.Handler:
    """Send meshnode's logs to stderr at the level -v/-q ask for; returns the handler."""
    # The daemon tells what it is doing by default; one-shot commands only warn.
    base = logging.INFO if args.command == "run" else logging.WARNING
    level = min(max(base + 10 * (args.quiet - args.verbose), logging.DEBUG), logging.CRITICAL)
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal(env):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(_VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
    out: logging.Handler = handler
    if args.command == "run":  # strangers cause many of a daemon's lines: each kind is capped
        out = RateLimitedHandler(handler)
    logger = logging.getLogger("meshnode")
    logger.addHandler(out)
    logger.setLevel(level)
    return out


def _error(message: str) -> None:
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "…"
    print(f"meshnode: error: {one_line(message)}", file=sys.stderr)


def _os_error_text(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Run the meshnode command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 after --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logger = logging.getLogger("meshnode")
    previous_level = logger.level
    handler = _setup_logging(args, os.environ)
    try:
        with _visible_stdout():
            return _run(args, os.environ)
    finally:
        # main() may run many times in one process (tests): leave the logger as it was.
        logger.removeHandler(handler)
        handler.close()  # a rate-limited handler tells what it held back
        logger.setLevel(previous_level)


def _visible_stdout() -> contextlib.AbstractContextManager[object]:
    """Whatever a command prints, no stranger's escape sequence reaches the terminal."""
    if sys.stdout is None:  # closed (meshnode ... >&-): print() writes nothing anyway
        return contextlib.nullcontext()
    return contextlib.redirect_stdout(cast("TextIO", VisibleStream(sys.stdout)))


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Resolve paths and config, run the command, map expected errors to exit codes."""
    location = resolve_config_path(args.config, env)
    try:
        ctx = build_context(args.data, location, env, quiet=args.quiet > 0)
        code: int = args.func(ctx, args)
    except ConfigError as exc:
        where = str(location.path)
        on_bad_config = getattr(args, "on_bad_config", None)
        if on_bad_config is not None:  # doctor reports it as a finding
            code = on_bad_config(where, exc, args)
            return code if code else EXIT_CONFIG
        _error(
            f"bad config: {exc}" if str(exc).startswith(where) else f"bad config: {where}: {exc}"
        )
        return EXIT_CONFIG
    except MeshnodeError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (meshnode feed | head): not our failure
        return EXIT_FAILURE
    except OSError as exc:
        _error(_os_error_text(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error("interrupted")
        return _EXIT_INTERRUPTED
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass

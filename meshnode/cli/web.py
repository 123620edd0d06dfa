"""``meshnode web``: the village page's operator settings."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from meshnode.errors import MeshnodeError
from meshnode.web.operator import MIN_PASSPHRASE_CHARS, set_passphrase

if TYPE_CHECKING:
    import argparse

    from meshnode.cli.context import Context

__all__ = ["add_web_commands"]


def add_web_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``web passphrase``."""
    web = sub.add_parser("web", help="the village page's operator settings")
    verbs = web.add_subparsers(dest="web_command", metavar="VERB", required=True)
    p = verbs.add_parser(
        "passphrase",
        help="set the operator's passphrase (read twice from the terminal, or once from stdin)",
    )
    p.set_defaults(func=cmd_web_passphrase)


def cmd_web_passphrase(ctx: Context, args: argparse.Namespace) -> int:
    """Store the operator passphrase's argon2id hash in the data dir."""
    del args
    if sys.stdin.isatty():
        passphrase = getpass.getpass(f"operator passphrase (at least {MIN_PASSPHRASE_CHARS}): ")
        if getpass.getpass("again: ") != passphrase:
            raise MeshnodeError("the two passphrases differ; nothing was changed")
    else:
        passphrase = sys.stdin.readline().rstrip("\r\n")
    path = set_passphrase(ctx.data_dir, passphrase)
    print(f"operator passphrase set ({path}); log in on the page's operator section")
    return 0

"""``meshnode status`` by a user who may not read the data dir (issue 15, point 3).

A forked child drops to ``nobody`` (with or without the data dir's group) and runs the CLI
in-process: the interpreter under /root cannot be started by nobody, but a fork already
has it. Needs root to change user; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import grp
import io
import os
import pwd
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meshnode.cli.main import main
from meshnode.host.datadir import init_data_dir

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _service_data_dir() -> Iterator[tuple[Path, grp.struct_group]]:
    """A data dir as the service leaves it (0750, root's, group ``users``); a config."""
    if os.geteuid() != 0:
        pytest.skip("changing to another user needs root")
    group = next((g for g in grp.getgrall() if g.gr_name in ("users", "staff")), None)
    if group is None:
        pytest.skip("no 'users' or 'staff' group to give the data dir")
    with tempfile.TemporaryDirectory(prefix="mn-access") as name:
        base = Path(name)
        base.chmod(0o755)  # nobody may walk to the data dir, not into it
        data = base / "data"
        init_data_dir(data, None)
        os.chown(data, 0, group.gr_gid)
        data.chmod(0o750)
        (base / "meshnode.toml").write_text("")
        (base / "meshnode.toml").chmod(0o644)
        yield data, group


def _status_as_nobody(data: Path, groups: list[int]) -> tuple[int, str]:
    """Exit code and stderr of ``meshnode status`` run by nobody with ``groups``."""
    nobody = pwd.getpwnam("nobody")
    main(["--data", str(data.parent / "missing"), "status"])  # imports all the CLI needs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        code = 99
        try:
            os.close(read_end)
            sys.stderr = io.TextIOWrapper(os.fdopen(write_end, "wb"), write_through=True)
            os.environ["HOME"] = str(data.parent)
            os.setgroups(groups)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            config = str(data.parent / "meshnode.toml")
            code = main(["--config", config, "--data", str(data), "status"])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        said = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), said


def test_a_user_outside_the_group_is_told_how_to_join_it() -> None:
    with _service_data_dir() as (data, group):
        code, said = _status_as_nobody(data, groups=[])
    assert code == 1, said
    assert f"{data} belongs to the {group.gr_name} group" in said, said
    assert f"sudo usermod -aG {group.gr_name} $USER" in said, said
    assert "log in again" in said
    assert "Traceback" not in said


def test_a_group_member_without_the_daemon_is_told_it_does_not_answer() -> None:
    with _service_data_dir() as (data, group):
        data.chmod(0o710)  # the group may pass, not read: the secret stays the owner's
        code, said = _status_as_nobody(data, groups=[group.gr_gid])
    assert code == 1, said
    assert "only its owner reads it" in said, said
    assert "no daemon answers on" in said, said
    assert "usermod" not in said

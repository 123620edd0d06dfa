"""The meshnode command line, in-process through main(argv) and a few real subprocesses."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from meshnode.cli.main import main
from meshnode.codec.bundle import encode_bundle
from meshnode.codec.content import Contact, ContactAction, encode_contact
from meshnode.codec.message import ContentType, create_entry
from meshnode.host.datadir import secret_path
from meshnode.secure.identity import DEFAULT_NETWORK_KEY, format_feed_id, network_tag
from meshnode.store.flatfile import FileStore
from meshnode.types import Seq
from tests.fakes import TS_MS, identity, make_chain

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from meshnode.secure.identity import Identity

ALICE, CAROL = identity(2), identity(4)
ALICE_ID, CAROL_ID = format_feed_id(ALICE.feed_id), format_feed_id(CAROL.feed_id)
SCRUBBED = (
    "MESHNODE_DATA",
    "MESHNODE_CONFIG",
    "INVOCATION_ID",
    "STATE_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "JOURNAL_STREAM",
)


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


class Cli(Protocol):
    def __call__(self, *argv: str, data: Path | None = None, stdin: str | None = None) -> Result:
        """Run main(["--data", data, *argv]) and capture its output."""
        ...


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no systemd or meshnode variables, XDG dirs under tmp_path."""
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    default = home / "data"

    def run(*argv: str, data: Path | None = None, stdin: str | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(["--data", str(data or default), *argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _one_error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("meshnode: error: ")
    assert "Traceback" not in result.err
    return lines[0]


def _my_id(cli: Cli, data: Path | None = None) -> str:
    result = cli("whoami", "--json", data=data)
    assert result.code == 0
    return str(result.json()["id"])


# -- init and identity ------------------------------------------------------------------------


def test_init_twice_exits_1_and_changes_nothing(cli: Cli, home: Path) -> None:
    assert cli("init").code == 0
    secret = secret_path(home / "data")
    before = (secret.read_bytes(), secret.stat().st_mtime_ns, sorted((home / "data").iterdir()))
    result = cli("init", "--new-network")
    assert result.code == 1
    assert "already exists" in _one_error_line(result)
    after = (secret.read_bytes(), secret.stat().st_mtime_ns, sorted((home / "data").iterdir()))
    assert after == before


def test_whoami_json_shape(cli: Cli, home: Path) -> None:
    init = cli("init", "--json")
    assert init.code == 0
    info = cli("whoami", "--json").json()
    assert info == init.json()
    assert set(info) == {"id", "data", "network"}
    assert info["id"].startswith("@")
    assert info["id"].endswith(".ed25519")
    assert info["data"] == str(home / "data")
    assert info["network"] == network_tag(DEFAULT_NETWORK_KEY)


def test_new_network_gives_another_tag_and_prints_the_key(cli: Cli, home: Path) -> None:
    result = cli("init", "--new-network", data=home / "private")
    assert result.code == 0
    key = result.out.split("share it with your community): ")[1].strip()
    assert len(bytes.fromhex(key)) == 32
    tag = cli("whoami", "--json", data=home / "private").json()["network"]
    assert tag == network_tag(bytes.fromhex(key)) != network_tag(DEFAULT_NETWORK_KEY)
    joined = cli("init", "--network-key", key, "--json", data=home / "friend")
    assert joined.json()["network"] == tag


def test_bad_network_key_is_an_error(cli: Cli) -> None:
    result = cli("init", "--network-key", "abc")
    assert result.code == 1
    assert "--network-key" in _one_error_line(result)


def test_commands_without_identity_say_run_init(cli: Cli) -> None:
    result = cli("post", "hi")
    assert result.code == 1
    assert "meshnode init" in _one_error_line(result)


def test_world_readable_secret_is_refused_with_chmod_hint(cli: Cli, home: Path) -> None:
    cli("init")
    secret = secret_path(home / "data")
    secret.chmod(0o644)
    result = cli("whoami")
    assert result.code == 1
    line = _one_error_line(result)
    assert "readable by others (mode 0644)" in line
    assert line.endswith(f"fix with: chmod 600 {secret}")


# -- posting and reading ---------------------------------------------------------------------


def test_post_and_feed_round_trip(cli: Cli) -> None:
    cli("init")
    me = _my_id(cli)
    posted = [cli("post", f"hello {n}", "--json").json() for n in range(1, 6)]
    assert [p["seq"] for p in posted] == [1, 2, 3, 4, 5]
    assert all(p["author"] == me and p["id"].startswith("%") for p in posted)

    lines = cli("feed", "--json").json_lines()
    assert [e["text"] for e in lines] == [f"hello {n}" for n in range(1, 6)]
    first = lines[0]
    assert set(first) == {"author", "seq", "id", "timestamp", "type", "text"}
    assert (first["author"], first["type"], first["id"]) == (me, "post", posted[0]["id"])
    assert isinstance(first["timestamp"], int)

    page = cli("feed", me, "--since", "2", "--limit", "2", "--json").json_lines()
    assert [e["seq"] for e in page] == [3, 4]
    human = cli("feed", "--since", "4")
    assert human.code == 0
    assert human.out.splitlines()[0].startswith("#5")
    assert "hello 5" in human.out


def test_post_from_stdin_posts_each_line(cli: Cli) -> None:
    cli("init")
    result = cli("post", "-", "--json", stdin="one\n\ntwo\r\n   \nthree")
    assert result.json() == {"posted": 3}
    texts = [e["text"] for e in cli("feed", "--json").json_lines()]
    assert texts == ["one", "two", "three"]
    assert "posted 2 entries" in cli("post", "-", stdin="four\nfive\n").out


def test_post_over_the_content_limit_is_a_clear_error(cli: Cli) -> None:
    cli("init")
    result = cli("post", "x" * 9000)
    assert result.code == 1
    assert "limit is 8192" in _one_error_line(result)
    bulk = cli("post", "-", stdin="fine\n" + "y" * 9000 + "\n")
    assert bulk.code == 1
    assert "stdin line 2" in _one_error_line(bulk)
    assert [e["text"] for e in cli("feed", "--json").json_lines()] == ["fine"]


def test_blank_post_is_a_usage_error(cli: Cli) -> None:
    cli("init")
    for text in ("", "   "):
        result = cli("post", text)
        assert result.code == 2
        assert "nothing to post" in result.err
    assert cli("feed", "--json").out == ""


def test_post_of_bytes_that_are_not_utf8_is_a_clear_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("init")
    argv_text = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python hands over argv
    result = cli("post", argv_text)
    assert result.code == 2
    assert "TEXT is not valid UTF-8" in result.err
    # A strict stdin (PYTHONIOENCODING=utf-8) used to raise from the loop: a traceback.
    strict = io.TextIOWrapper(io.BytesIO(b"caf\xc3\xa9\nbad \xff\nnever\n"), "utf-8", "strict")
    monkeypatch.setattr(sys, "stdin", strict)
    bulk = cli("post", "-")
    assert bulk.code == 1
    assert _one_error_line(bulk).endswith("stdin line 2: not valid UTF-8 (1 posted before it)")
    assert [e["text"] for e in cli("feed", "--json").json_lines()] == ["caf\u00e9"]


def test_contact_commands_publish_contact_entries(cli: Cli) -> None:
    cli("init")
    for command in ("follow", "unfollow", "block", "unblock"):
        assert cli(command, ALICE_ID).code == 0
    entries = cli("feed", "--json").json_lines()
    assert [e["type"] for e in entries] == ["contact"] * 4
    assert [e["contact"] for e in entries] == [
        {"action": a, "target": ALICE_ID} for a in ("follow", "unfollow", "block", "unblock")
    ]
    assert "[follow]" in cli("feed", "--limit", "1").out


def test_contact_on_own_feed_and_bad_ids_are_refused(cli: Cli) -> None:
    cli("init")
    assert cli("follow", _my_id(cli)).code == 1
    bad = cli("follow", "@nope.ed25519")
    assert bad.code == 2
    assert "not valid base64" in bad.err or "feed id" in bad.err


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli().code == 2
    assert cli("frobnicate").code == 2
    assert cli("feed", "--limit", "0").code == 2
    assert cli("init", "--new-network", "--network-key", "00").code == 2


def test_logs_go_to_stderr_with_journal_prefix_only_for_the_journal(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("init")
    plain = cli("feed", ALICE_ID)
    assert plain.out == ""
    assert plain.err.startswith("WARNING meshnode.cli.feed: nothing is held of feed")
    with (home / "journal").open("w") as journal:
        st = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        monkeypatch.setattr(sys, "stderr", journal)
        assert main(["--data", str(home / "data"), "feed", ALICE_ID]) == 0
    assert (home / "journal").read_text().startswith("<4>meshnode.cli.feed: nothing is held")


def test_version_and_quiet(cli: Cli) -> None:
    assert cli("--version").code == 0
    cli("init")
    assert cli("-q", "feed", ALICE_ID).err == ""


# -- status, check, compact ------------------------------------------------------------------


def test_status_json_shape(cli: Cli, home: Path) -> None:
    cli("init")
    cli("post", "hi")
    cli("follow", ALICE_ID)
    status = cli("status", "--json").json()
    assert {"id", "feeds", "entries", "bytes", "caps", "ranges", "forked", "data"} <= set(status)
    assert (status["feeds"], status["entries"]) == (1, 2)
    assert status["caps"]["max_hops"] == 2
    assert status["ranges"][status["id"]]["first"] == 1
    assert status["ranges"][status["id"]]["latest"] == 2
    assert status["data"] == str(home / "data")
    human = cli("status")
    assert human.code == 0
    assert status["id"] in human.out


def test_check_json_shape_and_exit_code(cli: Cli, home: Path) -> None:
    cli("init")
    for n in range(3):
        cli("post", f"note {n:02d}")
    report = cli("check", "--json")
    assert report.code == 0
    assert report.json() == {"ok": True, "entries": 3, "problems": [], "forked": []}

    segment = sorted((home / "data" / "store" / "log").glob("*.seg"))[0]
    blob = bytearray(segment.read_bytes())
    blob[blob.find(b"note 01") + 2] ^= 0x01
    segment.write_bytes(bytes(blob))
    damaged = cli("check", "--json")
    assert damaged.code == 1
    body = damaged.json()
    assert body["ok"] is False
    assert [(p["seq"], set(p)) for p in body["problems"]] == [(2, {"feed", "seq", "reason"})]
    assert cli("check").code == 1


@pytest.mark.parametrize("which", [1, 3], ids=["first", "latest"])
def test_check_names_a_damaged_first_or_latest_entry(cli: Cli, home: Path, which: int) -> None:
    # In a small store the flip lands in the checkpoint's tail checksum, so the index is
    # rebuilt and has no slot for the entry: check used to pass, and open cut the latest.
    cli("init")
    for n in range(1, 4):
        cli("post", f"note {n:02d}")
    segment = sorted((home / "data" / "store" / "log").glob("*.seg"))[0]
    blob = bytearray(segment.read_bytes())
    blob[blob.find(f"note {which:02d}".encode()) + 2] ^= 0x01
    segment.write_bytes(bytes(blob))
    damaged = cli("check", "--json")
    assert damaged.code == 1
    body = damaged.json()
    assert body["ok"] is False
    assert [(p["feed"], p["seq"]) for p in body["problems"]] == [(_my_id(cli), which)]
    assert "checksum mismatch" in body["problems"][0]["reason"]
    assert f"#{which}: checksum mismatch" in cli("check").out


def test_feed_skips_a_damaged_entry_shows_the_rest_and_exits_1(cli: Cli, home: Path) -> None:
    cli("init")
    cli("post", "-", stdin="".join(f"note {n:02d}\n" for n in range(1, 6)))
    segment = sorted((home / "data" / "store" / "log").glob("*.seg"))[0]
    blob = bytearray(segment.read_bytes())
    blob[blob.find(b"note 02") + 2] ^= 0x01
    segment.write_bytes(bytes(blob))
    result = cli("-q", "feed", "--json")
    assert result.code == 1
    assert [e["seq"] for e in result.json_lines()] == [1, 3, 4, 5]
    assert result.err.splitlines()[-1].startswith("meshnode: error: skipped damaged entry #2 of @")
    page = cli("-q", "feed", "--since", "1", "--limit", "2", "--json")
    assert [e["seq"] for e in page.json_lines()] == [3, 4]


def test_a_second_process_on_the_store_is_told_to_stop_the_first(cli: Cli, home: Path) -> None:
    cli("init")
    with FileStore(home / "data" / "store"):
        line = _one_error_line(cli("status"))
    assert "in use by another meshnode process" in line
    assert "control socket" not in line  # there is none to use


def _follows(author: Identity, target: Identity) -> bytes:
    return create_entry(
        author,
        DEFAULT_NETWORK_KEY,
        seq=Seq(1),
        previous=None,
        timestamp_ms=TS_MS,
        content_type=ContentType.CONTACT,
        content=encode_contact(Contact(action=ContactAction.FOLLOW, target=target.feed_id)),
    ).raw


def test_compact_reclaims_evicted_entries(cli: Cli, home: Path) -> None:
    config = home / "small.toml"
    config.write_text("[policy]\npartial_entries = 5\n")
    bundle = home / "b.bundle"
    raws = [_follows(ALICE, CAROL), *(e.raw for e in make_chain(CAROL, 40, size=200))]
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, raws))
    cli("--config", str(config), "init")
    cli("--config", str(config), "follow", ALICE_ID)
    assert cli("--config", str(config), "import", str(bundle), "--json").json()["added"] == 41
    ranges = cli("--config", str(config), "status", "--json").json()["ranges"]
    assert ranges[CAROL_ID] == {"first": 36, "latest": 40, "hops": 2}

    result = cli("--config", str(config), "compact", "--json")
    assert result.code == 0
    assert result.json()["reclaimed_bytes"] > 35 * 200
    assert cli("--config", str(config), "compact", "--json").json() == {"reclaimed_bytes": 0}
    assert cli("--config", str(config), "check", "--json").json()["entries"] == 1 + 1 + 5
    assert "reclaimed 0 B" in cli("compact").out


# -- config ---------------------------------------------------------------------------------


def test_bad_config_exits_78_naming_the_key(cli: Cli, home: Path) -> None:
    path = home / "bad.toml"
    path.write_text('[policy]\npartial_entries = "x"\n')
    result = cli("--config", str(path), "status")
    assert result.code == 78
    line = _one_error_line(result)
    assert line.endswith(f"{path}: policy.partial_entries: must be an integer >= 1, got 'x'")


def test_unknown_config_key_exits_78(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / "typo.toml"
    path.write_text("[store]\nfsinc = 'always'\n")
    monkeypatch.setenv("MESHNODE_CONFIG", str(path))
    result = cli("whoami")
    assert result.code == 78
    assert "store.fsinc: unknown key" in _one_error_line(result)


def test_missing_explicit_config_exits_78_missing_default_is_fine(cli: Cli, home: Path) -> None:
    result = cli("--config", str(home / "absent.toml"), "init")
    assert result.code == 78
    assert "cannot read config file" in _one_error_line(result)
    assert cli("init").code == 0


def test_config_file_in_xdg_dir_sets_the_data_dir(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = home / "xdg-config" / "meshnode"
    config_dir.mkdir(parents=True)
    (config_dir / "meshnode.toml").write_text('[node]\ndata_dir = "../../from-config"\n')
    assert main(["init", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == str(config_dir / "../../from-config")
    assert (home / "from-config" / "secret").exists()


def test_data_dir_from_env_then_xdg(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    assert (home / "xdg-data" / "meshnode" / "secret").exists()
    monkeypatch.setenv("MESHNODE_DATA", str(home / "env-data"))
    assert main(["init"]) == 0
    assert (home / "env-data" / "secret").exists()
    capsys.readouterr()


def test_config_command_prints_config_and_example(cli: Cli, home: Path) -> None:
    path = home / "m.toml"
    path.write_text("[policy]\nmax_hops = 3\n")
    shown = cli("--config", str(path), "config", "--json").json()
    assert shown["policy"]["max_hops"] == 3
    assert shown["source"] == str(path)
    example = cli("config", "--example").out
    assert "[policy]" in example
    assert "max_hops = 2" in cli("config").out


# -- export and import ------------------------------------------------------------------------


def test_export_then_import_into_another_node(cli: Cli, home: Path) -> None:
    a, b = home / "a", home / "b"
    cli("init", data=a)
    cli("post", "-", stdin="".join(f"line {n}\n" for n in range(25)), data=a)
    a_id = _my_id(cli, a)
    bundle = home / "a.bundle"
    exported = cli("export", str(bundle), "--json", data=a).json()
    assert exported == {
        "file": str(bundle),
        "feeds": 1,
        "entries": 25,
        "bytes": bundle.stat().st_size,
    }

    cli("init", data=b)
    cli("follow", a_id, data=b)
    first = cli("import", str(bundle), "--json", data=b)
    assert first.code == 0
    assert first.json() == {"added": 25, "held": 0, "unwanted": 0, "rejected": 0, "reasons": {}}
    assert "imported 25/25" in first.err
    again = cli("import", str(bundle), "--json", data=b).json()
    assert (again["added"], again["held"]) == (0, 25)
    texts = [e["text"] for e in cli("feed", a_id, "--json", data=b).json_lines()]
    assert texts == [f"line {n}" for n in range(25)]


def test_import_without_follow_counts_unwanted(cli: Cli, home: Path) -> None:
    bundle = home / "alice.bundle"
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, [e.raw for e in make_chain(ALICE, 4)]))
    cli("init")
    result = cli("import", str(bundle))
    assert result.code == 0
    assert "added 0" in result.out
    assert "not wanted 4" in result.out
    assert "follow a feed to keep it" in result.out


def test_import_retries_feeds_that_a_later_follow_makes_wanted(cli: Cli, home: Path) -> None:
    carol = make_chain(CAROL, 3)
    bundle = home / "mixed.bundle"
    raws = [*(e.raw for e in carol), _follows(ALICE, CAROL)]
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, raws))
    cli("init")
    cli("follow", ALICE_ID)
    tally = cli("import", str(bundle), "--json").json()
    assert (tally["added"], tally["unwanted"]) == (4, 0)


def test_import_rejects_entries_signed_for_another_network(cli: Cli, home: Path) -> None:
    forged = make_chain(ALICE, 3, network_key=bytes(32))
    bundle = home / "forged.bundle"
    bundle.write_bytes(encode_bundle(DEFAULT_NETWORK_KEY, [e.raw for e in forged]))
    cli("init")
    cli("follow", ALICE_ID)
    result = cli("import", str(bundle), "--json")
    assert result.code == 0
    assert result.json() == {
        "added": 0,
        "held": 0,
        "unwanted": 0,
        "rejected": 3,
        "reasons": {"bad signature": 3},
    }


def test_import_of_a_bundle_from_another_network_is_refused(cli: Cli, home: Path) -> None:
    cli("init", data=home / "a")
    cli("post", "hi", data=home / "a")
    bundle = home / "a.bundle"
    cli("export", str(bundle), data=home / "a")
    cli("init", "--new-network")
    result = cli("import", str(bundle))
    assert result.code == 1
    line = _one_error_line(result)
    assert f"bundle belongs to network {network_tag(DEFAULT_NETWORK_KEY)}" in line
    assert cli("status", "--json").json()["entries"] == 0


def test_import_of_garbage_and_of_a_missing_file(cli: Cli, home: Path) -> None:
    cli("init")
    junk = home / "junk.bundle"
    junk.write_bytes(b"definitely not a bundle")
    assert _one_error_line(cli("import", str(junk))).endswith(
        f"{junk}: not a meshnode bundle (bad magic)"
    )
    missing = cli("import", str(home / "absent.bundle"))
    assert missing.code == 1
    assert "No such file" in _one_error_line(missing)


def test_export_of_a_feed_not_held_is_an_error(cli: Cli, home: Path) -> None:
    cli("init")
    result = cli("export", str(home / "x.bundle"), "--feed", ALICE_ID)
    assert result.code == 1
    assert "not held" in _one_error_line(result)
    assert not list(home.glob("*.bundle"))
    cli("post", "hi")
    nowhere = cli("export", str(home / "no" / "dir.bundle"))
    assert _one_error_line(nowhere).endswith(
        f"cannot write {home}/no/dir.bundle: No such file or directory"
    )
    assert not list(home.glob(".*tmp"))


# -- real processes ---------------------------------------------------------------------------


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(HOME=str(home / "home"), XDG_CONFIG_HOME=str(home / "xdg-config"))
    return env


def _read_lines(fd: int, count: int, timeout_s: float) -> list[str]:
    """The first ``count`` lines written to pipe ``fd``, waiting at most ``timeout_s``."""
    buf = b""
    deadline = time.monotonic() + timeout_s
    while buf.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no output in time; got {buf!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"pipe closed; got {buf!r}"
        buf += chunk
    return buf.decode().splitlines()[:count]


@pytest.fixture
def run_process(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    data = home / "daemon"
    with subprocess.Popen(
        [sys.executable, "-m", "meshnode", "--data", str(data), "run", "--web", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(home),
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.mark.integration
def test_run_prints_its_id_and_exits_0_on_sigterm(
    run_process: subprocess.Popen[bytes], home: Path
) -> None:
    assert run_process.stdout is not None
    assert run_process.stderr is not None
    id_line, data_line, config_line = _read_lines(run_process.stdout.fileno(), 3, 30)
    assert id_line.startswith("id ")
    assert id_line.endswith(".ed25519")
    assert data_line.endswith(str(home / "daemon"))
    assert "meshnode.toml" in config_line
    run_process.send_signal(signal.SIGTERM)
    assert run_process.wait(timeout=30) == 0
    assert b"SIGTERM received" in run_process.stderr.read()
    check = subprocess.run(
        [sys.executable, "-m", "meshnode", "--data", str(home / "daemon"), "whoami", "--json"],
        capture_output=True,
        text=True,
        env=_env(home),
        check=True,
    )
    assert json.loads(check.stdout)["id"] == id_line.split()[1]


@pytest.mark.integration
def test_subprocess_bad_config_exits_78_without_traceback(home: Path) -> None:
    path = home / "bad.toml"
    path.write_text("[policy]\nmax_hops = 99\n")
    result = subprocess.run(
        [sys.executable, "-m", "meshnode", "--config", str(path), "whoami"],
        capture_output=True,
        text=True,
        env=_env(home),
    )
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"meshnode: error: bad config: {path}: policy.max_hops: must be an integer <= 6, got 99"
    )


def test_restating_a_contact_publishes_nothing(cli: Cli) -> None:
    assert cli("init").code == 0
    assert cli("follow", ALICE_ID).code == 0
    again = cli("follow", ALICE_ID, "--json")
    assert again.code == 0
    assert again.json() == {"changed": False, "target": ALICE_ID}
    assert "nothing to do" in cli("follow", ALICE_ID).out
    assert cli("unblock", ALICE_ID).code == 0  # not blocked: nothing to say either
    entries = cli("feed", "--json").out.splitlines()
    assert len(entries) == 1
    assert cli("block", ALICE_ID).code == 0
    assert len(cli("feed", "--json").out.splitlines()) == 2


# -- about, reply and timeline ----------------------------------------------------------------


def test_about_reply_and_timeline(cli: Cli) -> None:
    assert cli("init").code == 0
    post = cli("post", "the well has water", "--json").json()
    assert cli("about", "--name", "Amina", "--description", "teacher").code == 0
    replied = cli("reply", str(post["id"]), "good news!", "--json")
    assert replied.code == 0
    page = cli("timeline", "--limit", "2", "--json").json()
    entries = page["entries"]
    assert isinstance(entries, list)
    assert [e["type"] for e in entries] == ["reply", "about"]
    assert entries[0]["parent"] == post["id"]
    assert entries[1]["about"] == {"name": "Amina", "description": "teacher"}
    rest = cli("timeline", "--before", str(page["next"]), "--json").json()
    assert [e["text"] for e in rest["entries"]] == ["the well has water"]
    assert rest["next"] is None
    text = cli("timeline").out.splitlines()
    assert "[reply] good news!" in text[0]
    assert "[about] Amina: teacher" in text[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("reply", "%nope", "x"), "not an entry id"),
        (("about", "--name", ""), "a name is 1 to 64 bytes"),
        (("about", "--name", "n" * 65), "a name is 1 to 64 bytes"),
        (("timeline", "--before", "1-2-3"), "TIMESTAMP-FEEDHEX-SEQ"),
    ],
)
def test_about_reply_and_timeline_refuse_bad_input(
    cli: Cli, argv: tuple[str, ...], message: str
) -> None:
    assert cli("init").code == 0
    result = cli(*argv)
    assert result.code == 1
    assert message in _one_error_line(result)

"""The daemon's control socket, and the one way the CLI reaches a node with or without it.

While ``meshnode run`` owns the store, other commands talk to it over a Unix stream socket
``control.sock`` (mode 0660) in $RUNTIME_DIRECTORY under systemd, else in the data dir.
One request per connection, JSON on single lines (UTF-8)::

    request         {"cmd": NAME, "args": {...}}
    plain answer    {"ok": true, "result": {...}}  or  {"ok": false, "error": TEXT}
    stream answer   {"ok": true, "item": {...}} per item, then {"ok": true, "end": true}
                    (an error line may end it early); {"ok": true, "item": {"busy": true}}
                    every 10 s while the stream waits for slow file work (host/jobs.py), which
                    runs in a worker thread so the loop keeps serving links and timers

Commands are ops.HANDLERS and ops.STREAMS plus what the daemon adds (``peers``).
``open_access`` gives the CLI the same ``call``/``stream`` interface either way: over the
socket when a daemon answers there, else on a node the CLI opens itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from meshnode.daemon import ops
from meshnode.errors import MeshnodeError, StoreError
from meshnode.host.jobs import Job, run_inline

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from meshnode.core.node import Node

__all__ = [
    "SOCKET_NAME",
    "Access",
    "ControlClient",
    "ControlServer",
    "DaemonError",
    "LocalAccess",
    "control_socket_path",
    "find_daemon",
]

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
_MAX_REQUEST_BYTES = 64 << 20  # a bulk post of 1,000 posts of 64 KiB fits
_REQUEST_TIMEOUT_S = 30.0
_YIELD_EVERY = 200

Handlers = dict[str, "Callable[[Node, Mapping[str, object]], dict[str, object]]"]
Streams = dict[str, "ops.Stream"]
_KEEPALIVE_S = 10.0  # while a job runs, well within the client's read timeout


class DaemonError(MeshnodeError):
    """The daemon answered with an error, or stopped answering."""


class Access(Protocol):
    """What the CLI needs of a node, wherever it runs."""

    remote: bool

    def call(self, cmd: str, **args: object) -> dict[str, object]:
        """Run a plain command; MeshnodeError on failure."""
        ...

    def stream(self, cmd: str, **args: object) -> Iterator[dict[str, object]]:
        """Run a streaming command."""
        ...


def control_socket_path(data_dir: Path, env: Mapping[str, str], configured: str = "") -> Path:
    """Where the daemon listens for commands: [node] control_socket, else in
    $RUNTIME_DIRECTORY (systemd), else in the data dir."""
    if configured:
        return Path(configured).expanduser()
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else data_dir / SOCKET_NAME


class LocalAccess:
    """Commands run on a node this process opened."""

    remote = False

    def __init__(self, node: Node) -> None:
        self.node = node

    def call(self, cmd: str, **args: object) -> dict[str, object]:
        """Run a plain command on the local node."""
        handler = ops.HANDLERS.get(cmd)
        if handler is None:
            raise ops.RequestError(f"{cmd} needs the daemon (meshnode run)")
        return handler(self.node, args)

    def stream(self, cmd: str, **args: object) -> Iterator[dict[str, object]]:
        """Run a streaming command on the local node (its jobs in place)."""
        return run_inline(ops.STREAMS[cmd](self.node, args))


class ControlClient:
    """Commands sent to the running daemon."""

    remote = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self, cmd: str, args: Mapping[str, object]) -> Iterator[dict[str, object]]:
        request = json.dumps({"cmd": cmd, "args": dict(args)}).encode("utf-8") + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(_REQUEST_TIMEOUT_S)
            try:
                s.connect(str(self.path))
                s.sendall(request)
                for line in s.makefile("rb"):
                    answer = json.loads(line)
                    if not isinstance(answer, dict):
                        raise DaemonError("daemon sent a malformed answer")
                    if not answer.get("ok"):
                        raise DaemonError(str(answer.get("error", "daemon failed")))
                    yield answer
            except (OSError, ValueError) as exc:
                raise DaemonError(f"lost the daemon at {self.path}: {exc}") from exc

    def call(self, cmd: str, **args: object) -> dict[str, object]:
        """Send one command and return its result."""
        for answer in self._lines(cmd, args):
            result = answer.get("result")
            if isinstance(result, dict):
                return result
        raise DaemonError("daemon closed the connection without an answer")

    def stream(self, cmd: str, **args: object) -> Iterator[dict[str, object]]:
        """Send one streaming command and yield its items."""
        for answer in self._lines(cmd, args):
            if answer.get("end"):
                return
            item = answer.get("item")
            if isinstance(item, dict):
                yield item
        raise DaemonError("daemon closed the connection before the end of the answer")


def find_daemon(path: Path) -> ControlClient | None:
    """A client for the daemon listening at ``path``, or None when none answers there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except OSError:
            return None  # no socket, or a stale one left by a killed daemon
    return ControlClient(path)


class ControlServer:
    """Serves ops on the daemon's node; ``after`` runs after every command (to send entries)."""

    def __init__(
        self, node: Node, *, extra: Handlers, after: Callable[[], None], path: Path
    ) -> None:
        self.node = node
        self.handlers: Handlers = {**ops.HANDLERS, **extra}
        self.streams: Streams = dict(ops.STREAMS)
        self.after = after
        self.path = path

    async def start(self) -> asyncio.Server:
        """Bind the socket (replacing a stale one) with mode 0660."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # the store lock proves no other daemon uses it
        server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=_MAX_REQUEST_BYTES
        )
        self.path.chmod(0o660)
        return server

    def close(self) -> None:
        """Remove the socket file."""
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                line = await reader.readline()
            await self._answer(line, writer)
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("control connection ended: %s", exc)
        except Exception:
            log.exception("control command failed")
        finally:
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(line)
            cmd, args = request["cmd"], request.get("args", {})
            if not isinstance(cmd, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            await _send(writer, {"ok": False, "error": "malformed request"})
            return
        try:
            if cmd in self.streams:
                await self._stream(self.streams[cmd](self.node, args), writer)
            elif cmd in self.handlers:
                await _send(writer, {"ok": True, "result": self.handlers[cmd](self.node, args)})
            else:
                await _send(writer, {"ok": False, "error": f"unknown command {cmd!r}"})
        except (MeshnodeError, ValueError) as exc:
            if isinstance(exc, StoreError):
                log.error("control command %s failed: %s", cmd, exc)
            await _send(writer, {"ok": False, "error": str(exc)})
        finally:
            self.after()

    async def _stream(
        self, items: Iterator[dict[str, object] | Job[Any]], writer: asyncio.StreamWriter
    ) -> None:
        """Send a stream's items; run its jobs in a worker thread (host/jobs.py)."""
        for n, item in enumerate(items, 1):
            if isinstance(item, Job):
                await _run_job(item, writer)
                continue
            await _send(writer, {"ok": True, "item": item})
            if n % _YIELD_EVERY == 0 or "phase" in item:  # a long step done
                await asyncio.sleep(0)  # let links and timers run during a long stream
        await _send(writer, {"ok": True, "end": True})


async def _run_job(job: Job[Any], writer: asyncio.StreamWriter) -> None:
    """Run ``job`` off the loop, telling the client it is busy every few seconds. If the
    client goes, the job still ends before the stream does (it may be writing a file)."""
    task = asyncio.ensure_future(asyncio.to_thread(job.run))
    client_gone: OSError | TimeoutError | None = None
    while True:
        done, _ = await asyncio.wait({task}, timeout=_KEEPALIVE_S)
        if done:
            break
        if client_gone is None:
            try:
                await _send(writer, {"ok": True, "item": {"busy": True}})
            except (OSError, TimeoutError) as exc:
                client_gone = exc
    task.result()
    if client_gone is not None:
        raise client_gone


async def _send(writer: asyncio.StreamWriter, answer: dict[str, object]) -> None:
    writer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")
    async with asyncio.timeout(_REQUEST_TIMEOUT_S):  # a client that stops reading is dropped
        await writer.drain()

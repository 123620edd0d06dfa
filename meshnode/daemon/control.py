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

Limits, so that a local process cannot starve the daemon of file descriptors or memory:
at most _MAX_CONNECTIONS connections at once. One more closes the oldest connection that
has still not sent its request (the CLI sends it at once: an old silent one is idle);
when every one is running a command, the newcomer gets an error line saying the daemon
is busy, and is closed. A request must arrive whole within _REQUEST_TIMEOUT_S, one
request holds at most _MAX_REQUEST_BYTES and all requests being read at once at most
_MAX_BUFFERED_BYTES.
``open_access`` gives the CLI the same ``call``/``stream`` interface either way: over the
socket when a daemon answers there, else on a node the CLI opens itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from meshnode.daemon import ops, private_ops
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
# Two bulk posts read at once; a third waits for the client to retry (its error says busy).
_MAX_BUFFERED_BYTES = 2 * _MAX_REQUEST_BYTES
# The CLI uses one connection per command, scripts a few: far below the 1,024 file
# descriptors a service gets by default, which links and store segments share.
_MAX_CONNECTIONS = 32
_READ_BYTES = 64 << 10  # also the stream's buffer: requests are gathered in _read_request
_REQUEST_TIMEOUT_S = 30.0  # the request's whole line, and each answer's write
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

    def __init__(self, node: Node, extra: Handlers | None = None) -> None:
        self.node = node
        self.handlers: Handlers = {**ops.HANDLERS, **(extra or {})}
        self.streams: Streams = {**ops.STREAMS, **private_ops.STREAMS}

    def call(self, cmd: str, **args: object) -> dict[str, object]:
        """Run a plain command on the local node."""
        handler = self.handlers.get(cmd)
        if handler is None:
            raise ops.RequestError(f"{cmd} needs the daemon (meshnode run)")
        return handler(self.node, args)

    def stream(self, cmd: str, **args: object) -> Iterator[dict[str, object]]:
        """Run a streaming command on the local node (its jobs in place)."""
        return run_inline(self.streams[cmd](self.node, args))


class ControlClient:
    """Commands sent to the running daemon."""

    remote = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self, cmd: str, args: Mapping[str, object]) -> Iterator[dict[str, object]]:
        request = json.dumps({"cmd": cmd, "args": dict(args)}).encode("utf-8") + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(_REQUEST_TIMEOUT_S)
            unsent: OSError | None = None
            try:
                s.connect(str(self.path))
                try:
                    s.sendall(request)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    unsent = exc  # a busy daemon answers and closes before reading: read it
                for line in s.makefile("rb"):
                    answer = json.loads(line)
                    if not isinstance(answer, dict):
                        raise DaemonError("daemon sent a malformed answer")
                    if not answer.get("ok"):
                        raise DaemonError(str(answer.get("error", "daemon failed")))
                    yield answer
                if unsent is not None:
                    raise unsent
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
        self.streams: Streams = {**ops.STREAMS, **private_ops.STREAMS}
        self.after = after
        self.path = path
        self.connections = 0  # open now
        self.refused = 0  # since start, for being over _MAX_CONNECTIONS
        self.dropped = 0  # since start, silent connections closed to make room
        self._buffered = 0  # bytes of requests being read
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # no request yet, oldest first
        self._dropped: set[asyncio.StreamWriter] = set()

    async def start(self) -> asyncio.Server:
        """Bind the socket (replacing a stale one) with mode 0660.

        OSError, removing nothing, when something other than a socket is at the path.
        """
        _remove_stale_socket(self.path)  # the store lock proves no other daemon uses it
        server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=_READ_BYTES, backlog=_MAX_CONNECTIONS
        )
        self.path.chmod(0o660)
        return server

    def close(self) -> None:
        """Remove the socket file (only a socket: whatever replaced it is left)."""
        with contextlib.suppress(OSError):
            _remove_stale_socket(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= _MAX_CONNECTIONS and not self._drop_oldest_waiting():
            self._refuse(writer)
            return
        self.connections += 1
        self._waiting[writer] = None
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                line = await self._read_request(reader)
            self._waiting.pop(writer, None)
            if writer in self._dropped:
                return
            await self._answer(line, writer)
        except _Refused as exc:
            log.warning("refusing a control request: %s", exc)
            with contextlib.suppress(OSError, TimeoutError):
                await _send(writer, {"ok": False, "error": str(exc)})
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("control connection ended: %s", exc)
        except Exception:
            log.exception("control command failed")
        finally:
            self.connections -= 1
            self._waiting.pop(writer, None)
            self._dropped.discard(writer)
            writer.close()

    def _drop_oldest_waiting(self) -> bool:
        """Close the oldest connection that has not sent its request; False if none."""
        if not self._waiting:
            return False
        oldest = next(iter(self._waiting))
        del self._waiting[oldest]
        self._dropped.add(oldest)
        self.dropped += 1
        log.warning(
            "closing the oldest control connection still silent: %d open, the most served",
            self.connections,
        )
        oldest.transport.abort()  # its read ends; _serve sees it in _dropped
        return True

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """Answer a connection over the limit with an error line, without waiting on it."""
        self.refused += 1
        log.warning(
            "refusing a control connection: %d open, the most served at once", self.connections
        )
        busy = f"the daemon is busy: {self.connections} control connections open; try again"
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(json.dumps({"ok": False, "error": busy}).encode("utf-8") + b"\n")
        writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> bytes:
        """The request line (to EOF if it has no newline), within the limits on bytes."""
        line = bytearray()
        try:
            while True:
                chunk = await reader.read(_READ_BYTES)
                end = chunk.find(b"\n")
                if end >= 0:
                    chunk = chunk[: end + 1]
                if len(line) + len(chunk) > _MAX_REQUEST_BYTES:
                    raise _Refused(f"request over {_MAX_REQUEST_BYTES >> 20} MiB")
                if self._buffered + len(chunk) > _MAX_BUFFERED_BYTES:
                    raise _Refused("the daemon is busy reading other requests; try again")
                line += chunk
                self._buffered += len(chunk)
                if not chunk or end >= 0:
                    return bytes(line)
        finally:
            self._buffered -= len(line)

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


def _remove_stale_socket(path: Path) -> None:
    """Unlink the socket at ``path``, if any; OSError if anything else is there."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        # [node] control_socket may name any path: never delete a file, link or folder.
        raise OSError(
            errno.EEXIST, "something other than a socket is there; meshnode removes only a socket"
        )
    path.unlink()


# Every job runs on this one worker, in turn: a drive's files are read by one thread, so
# the memory the allocator keeps for it after a sync is one thread's, not one per worker
# of the default executor (bench hostile: 42 MB over idle with those, against 25 allowed).
_JOBS = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="job")


class _Refused(Exception):
    """A request over a limit: its text is the answer's error."""


async def _run_job(job: Job[Any], writer: asyncio.StreamWriter) -> None:
    """Run ``job`` off the loop, telling the client it is busy every few seconds. If the
    client goes, the job still ends before the stream does (it may be writing a file)."""
    task = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(_JOBS, job.run))
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

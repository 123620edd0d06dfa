"""The daemon runs a stream's jobs in a worker thread: its loop keeps running meanwhile."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

import pytest

from meshnode.daemon import control
from meshnode.host.jobs import Job

if TYPE_CHECKING:
    from collections.abc import Iterator


class FakeWriter:
    """Collects answer lines; ``on_line`` sees each one; ``broken`` makes drain fail."""

    def __init__(self, on_line: Any = None, broken: bool = False) -> None:
        self.lines: list[dict[str, object]] = []
        self.on_line = on_line
        self.broken = broken

    def write(self, data: bytes) -> None:
        line = json.loads(data)
        self.lines.append(line)
        if self.on_line:
            self.on_line(line)

    async def drain(self) -> None:
        if self.broken:
            raise ConnectionResetError("client went away")


def served(items: Iterator[dict[str, object] | Job[Any]], writer: FakeWriter) -> None:
    server = control.ControlServer.__new__(control.ControlServer)

    async def main() -> None:
        async with asyncio.timeout(30):
            await server._stream(items, writer)  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_job_runs_off_the_loop_and_the_client_hears_it_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "_KEEPALIVE_S", 0.01)
    release = threading.Event()
    loop_thread = threading.get_ident()
    where: list[int] = []

    def slow() -> str:
        where.append(threading.get_ident())
        assert release.wait(20)  # until the loop has sent a keepalive meanwhile
        return "written"

    job = Job(slow)

    def stream() -> Iterator[dict[str, object] | Job[Any]]:
        yield {"phase": "to drive", "done": 0, "total": 1}
        yield job
        yield {"summary": {"job": job.result()}}

    def on_line(line: dict[str, object]) -> None:
        if line.get("item") == {"busy": True}:
            release.set()

    writer = FakeWriter(on_line)
    served(stream(), writer)
    assert where == [where[0]]
    assert where[0] != loop_thread  # a worker thread, not the loop's
    items = [line.get("item") for line in writer.lines]
    assert items[0] == {"phase": "to drive", "done": 0, "total": 1}
    assert {"busy": True} in items
    assert items[-2] == {"summary": {"job": "written"}}
    assert writer.lines[-1] == {"ok": True, "end": True}


def test_a_client_that_goes_away_mid_job_waits_for_the_job_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "_KEEPALIVE_S", 0.01)
    finished = threading.Event()
    first_try = threading.Event()

    def slow() -> None:
        assert first_try.wait(20)
        finished.set()

    def on_line(line: dict[str, object]) -> None:
        first_try.set()  # the keepalive that finds the client gone

    writer = FakeWriter(on_line, broken=True)
    with pytest.raises(ConnectionResetError):
        served(iter([Job(slow)]), writer)
    assert finished.is_set()  # the file work ended before the stream gave up

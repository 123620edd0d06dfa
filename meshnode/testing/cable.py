"""A serial cable for tests: two ptys joined by a relay that carries bytes at a baud rate.

Each end gets a pty; a node's radio interface (``driver = "serial"``) opens the slave
(``port(name)``). What one end writes reaches the other no faster than the wire allows
(10 bit times a byte, 8N1), in slices of about 50 ms; bytes wait in the relay like in a
UART's buffer. Bytes are counted per direction, with the most ever waiting, and each may
be dropped with a given probability (seeded) to stand for line noise. The relay runs on
the event loop's clock, so a loop that skips idle waits (bench/warp.py) carries a slow
cable in little real time.

``python -m meshnode.testing.cable --baud 9600 --link-a A --link-b B`` runs one for
daemons in other processes: symlinks at A and B name the two ptys, and when stopped
(SIGTERM or SIGINT) it prints the bytes each end wrote and lost as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tty
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ThrottledCable"]

_SLICE_S = 0.05  # the relay moves bytes in slices of this much wire time
_READ_BYTES = 4096


@dataclass(slots=True)
class _End:
    name: str
    master: int
    slave: int
    queue: bytearray = field(default_factory=bytearray)  # written by this end, not yet carried
    out: bytearray = field(default_factory=bytearray)  # carried, not yet taken by the pty
    writing: bool = False
    sent_bytes: int = 0  # bytes this end wrote that the wire carried
    most_queued_bytes: int = 0  # the most ever waiting for the wire (a UART's backlog)
    dropped_bytes: int = 0


class ThrottledCable:
    """Two ptys ``a`` and ``b`` joined at ``baud`` (see the module docstring)."""

    def __init__(self, baud: int, *, drop_bytes: float = 0.0, seed: int = 0) -> None:
        self.baud = baud
        self.drop_bytes = drop_bytes
        self._rng = random.Random(seed)
        self._ends: dict[str, _End] = {}
        try:
            for name in ("a", "b"):
                master, slave = os.openpty()
                tty.setraw(slave)  # bytes pass unchanged and nothing echoes
                os.set_blocking(master, False)
                self._ends[name] = _End(name=name, master=master, slave=slave)
        except BaseException:
            self.close()
            raise
        self._wakes = {name: asyncio.Event() for name in self._ends}

    @property
    def byte_s(self) -> float:
        """Wire time of one byte (8N1)."""
        return 10 / self.baud

    def port(self, name: str) -> str:
        """The pty path end ``name`` ("a" or "b") opens."""
        return os.ttyname(self._ends[name].slave)

    def sent_bytes(self, name: str) -> int:
        """Bytes end ``name`` wrote that went over the wire (dropped ones included)."""
        return self._ends[name].sent_bytes

    def written_bytes(self, name: str) -> int:
        """Bytes end ``name`` wrote: carried, or still waiting for the wire."""
        end = self._ends[name]
        return end.sent_bytes + len(end.queue)

    def dropped_bytes(self, name: str) -> int:
        """Bytes end ``name`` wrote that the wire lost."""
        return self._ends[name].dropped_bytes

    def most_queued_bytes(self, name: str) -> int:
        """The most bytes end ``name`` ever had waiting for the wire."""
        return self._ends[name].most_queued_bytes

    async def run(self) -> None:
        """Carry bytes both ways until cancelled."""
        loop = asyncio.get_running_loop()
        for name, end in self._ends.items():
            loop.add_reader(end.master, self._readable, name)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._carry("a", "b"))
                group.create_task(self._carry("b", "a"))
        finally:
            for end in self._ends.values():
                if end.master >= 0:
                    loop.remove_reader(end.master)
                    loop.remove_writer(end.master)

    def _readable(self, name: str) -> None:
        end = self._ends[name]
        try:
            data = os.read(end.master, _READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # the slave is not open (yet): nothing was written
        end.queue += data
        end.most_queued_bytes = max(end.most_queued_bytes, len(end.queue))
        if data:
            self._wakes[name].set()

    async def _carry(self, src: str, dst: str) -> None:
        """Move ``src``'s bytes to ``dst``, a slice of wire time at a time."""
        loop = asyncio.get_running_loop()
        end, far = self._ends[src], self._ends[dst]
        slice_bytes = max(1, round(_SLICE_S / self.byte_s))
        clock = loop.time()  # when the wire is free
        while True:
            if not end.queue:
                self._wakes[src].clear()
                await self._wakes[src].wait()
                clock = max(clock, loop.time())
            chunk = bytes(end.queue[:slice_bytes])
            del end.queue[: len(chunk)]
            clock += len(chunk) * self.byte_s
            await asyncio.sleep(max(0.0, clock - loop.time()))
            end.sent_bytes += len(chunk)
            if self.drop_bytes:
                kept = bytes(b for b in chunk if self._rng.random() >= self.drop_bytes)
                end.dropped_bytes += len(chunk) - len(kept)
                chunk = kept
            self._write(far, chunk)

    def _write(self, end: _End, data: bytes) -> None:
        """Hand ``data`` to ``end``'s pty; what it cannot take now waits for room."""
        end.out += data
        try:
            written = os.write(end.master, end.out) if end.out else 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = len(end.out)  # nobody has the slave open: lost, as on a cable
        del end.out[:written]
        loop = asyncio.get_running_loop()
        if end.out and not end.writing:
            loop.add_writer(end.master, self._write, end, b"")
            end.writing = True
        elif not end.out and end.writing:
            loop.remove_writer(end.master)
            end.writing = False

    def close(self) -> None:
        """Close both ptys (once ``run`` has ended)."""
        for end in self._ends.values():
            for fd in (end.master, end.slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            end.master = end.slave = -1

    def counts(self) -> dict[str, dict[str, int]]:
        """Bytes written, carried, lost and most queued, by end."""
        return {
            name: {
                "written_bytes": self.written_bytes(name),
                "sent_bytes": end.sent_bytes,
                "dropped_bytes": end.dropped_bytes,
                "most_queued_bytes": end.most_queued_bytes,
            }
            for name, end in self._ends.items()
        }


async def _serve(cable: ThrottledCable) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(cable.run())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> None:
    """Run a cable between two symlinked ptys until stopped; print its counts as JSON."""
    parser = argparse.ArgumentParser(prog="python -m meshnode.testing.cable")
    parser.add_argument("--baud", type=int, required=True)
    parser.add_argument("--link-a", type=Path, required=True)
    parser.add_argument("--link-b", type=Path, required=True)
    parser.add_argument("--drop-bytes", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cable = ThrottledCable(args.baud, drop_bytes=args.drop_bytes, seed=args.seed)
    links: dict[str, Path] = {"a": args.link_a, "b": args.link_b}
    try:
        for name, link in links.items():
            link.symlink_to(cable.port(name))
        asyncio.run(_serve(cable))
    finally:
        for link in links.values():
            link.unlink(missing_ok=True)
        cable.close()
    sys.stdout.write(json.dumps(cable.counts()) + "\n")


if __name__ == "__main__":
    main()

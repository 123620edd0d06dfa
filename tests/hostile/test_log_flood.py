"""Log floods: lines strangers cause are rate-limited per kind, and the count is told.

The handler is driven on a fake clock; a real ``meshnode run`` then takes a flood of junk
connections (each one a failed handshake, a line each before) and its stderr stays short.
"""

from __future__ import annotations

import io
import logging
import socket
from dataclasses import dataclass

import pytest

from meshnode.host import eventlog
from meshnode.host.eventlog import _LOG_BURST, RateLimitedHandler
from tests.daemons import daemon_pool, wait_for


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def make_logger(
    clock: FakeClock, *, burst: int, refill_s: float
) -> tuple[logging.Logger, io.StringIO, RateLimitedHandler]:
    out = io.StringIO()
    inner = logging.StreamHandler(out)
    inner.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler = RateLimitedHandler(inner, clock=clock, burst=burst, refill_s=refill_s)
    logger = logging.getLogger(f"meshnode.test.flood.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, out, handler


def test_a_flood_of_one_kind_is_capped_and_counted() -> None:
    clock = FakeClock()
    log, out, handler = make_logger(clock, burst=5, refill_s=10.0)
    for n in range(10_000):
        log.warning("refusing a connection from %s: %s", f"10.0.{n // 256}.{n % 256}", "full")
    log.info("listening on %s", "0.0.0.0:7420")  # another kind: not held back
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[-1] == "INFO listening on 0.0.0.0:7420"
    assert handler.suppressed == 10_000 - 5
    clock.now = 10.0  # one more line of that kind may go: it brings the count with it
    log.warning("refusing a connection from %s: %s", "10.9.9.9", "full")
    lines = out.getvalue().splitlines()
    assert lines[-2] == (
        "WARNING 9995 similar lines suppressed, the last: "
        "refusing a connection from 10.0.39.15: full"
    )
    assert lines[-1] == "WARNING refusing a connection from 10.9.9.9: full"


def test_a_flood_that_stops_is_still_told() -> None:
    clock = FakeClock()
    log, out, handler = make_logger(clock, burst=2, refill_s=10.0)
    for _ in range(50):
        log.info("radio neighbour %s heard", "0a0b0c0d")
    clock.now = 61.0  # the flood stopped; any later line tells what was held back
    log.info("link to %s closed", "@x")
    assert out.getvalue().splitlines()[-2:] == [
        "INFO 48 similar lines suppressed, the last: radio neighbour 0a0b0c0d heard",
        "INFO link to @x closed",
    ]
    for _ in range(7):  # the same kind (the template): 2 go, its bucket full again
        log.info("radio neighbour %s heard", "0a0b0c0e")
    handler.close()  # and the daemon's exit tells the rest
    assert out.getvalue().splitlines()[-1] == (
        "INFO 5 similar lines suppressed, the last: radio neighbour 0a0b0c0e heard"
    )


def test_kinds_are_capped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventlog, "_LOG_MAX_KINDS", 8)
    clock = FakeClock()
    log, out, handler = make_logger(clock, burst=1, refill_s=10.0)
    for n in range(1000):  # messages built by the caller: every line its own "kind"
        log.warning(f"peer {n} said something")  # noqa: G004 - the point of the test
        log.warning(f"peer {n} said something")  # noqa: G004
    assert len(handler._buckets) <= 8
    lines = out.getvalue().splitlines()
    assert len(lines) <= 3 * 1000  # each line, plus a summary of its forgotten kind
    assert "WARNING 1 similar lines suppressed, the last: peer 0 said something" in lines


@pytest.mark.slow
def test_a_daemon_flooded_with_junk_connections_logs_a_bounded_number_of_lines() -> None:
    with daemon_pool() as pool:
        pool.init("a")
        daemon = pool.start("a")
        baseline = daemon.stderr().count("\n")
        for n in range(1000):
            with socket.socket() as s:
                s.bind((f"127.0.3.{1 + n % 200}", 0))
                s.connect(("127.0.0.1", daemon.port))
                s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(64))
        # Each failed handshake is a line until the burst is spent; the rest are counted,
        # and the count is told at the latest when the daemon stops.
        wait_for(
            "the burst to be logged",
            lambda: daemon.stderr().count("handshake with 127.0.3.") >= _LOG_BURST or None,
            30,
        )
        daemon.signal_stop()
        assert daemon.wait_exit() == 0
        stderr = daemon.stderr()
        lines = stderr.count("\n") - baseline
        assert lines < 100, stderr[-3000:]
        assert "similar lines suppressed, the last: handshake with 127.0.3." in stderr

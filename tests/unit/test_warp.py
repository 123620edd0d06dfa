"""The warped event loop: idle waits are skipped, I/O and ordering are kept."""

from __future__ import annotations

import asyncio
import os
import time

from meshnode.bench.warp import WarpLoop, run_warped


def test_an_hour_of_sleep_takes_no_real_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    real = time.monotonic()
    slept: float = run_warped(main())
    assert 3600 <= slept < 3601
    assert time.monotonic() - real < 2


def test_timers_fire_in_order_on_the_warped_clock() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        def fire(name: str) -> None:
            fired.append((name, loop.time() - start))

        for name, delay in (("late", 500.0), ("early", 20.0), ("middle", 120.0)):
            loop.call_later(delay, fire, name)
        await asyncio.sleep(600)

    run_warped(main())
    assert [name for name, _ in fired] == ["early", "middle", "late"]
    assert [round(t) for _, t in fired] == [20, 120, 500]


def test_bytes_in_flight_arrive_before_the_clock_jumps() -> None:
    """A reader waiting on a pipe gets the bytes at once, not after the next timer."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        os.set_blocking(r, False)
        got: asyncio.Future[float] = loop.create_future()

        def readable() -> None:
            if not got.done():
                got.set_result(loop.time())

        loop.add_reader(r, readable)
        start = loop.time()
        loop.call_later(1000, lambda: None)  # a far timer the loop could jump to
        os.write(w, b"x")
        arrived = await got
        loop.remove_reader(r)
        os.close(r)
        os.close(w)
        return arrived - start

    arrived: float = run_warped(main())
    assert arrived < 1


def test_skipped_time_is_reported() -> None:
    loop = WarpLoop()
    try:
        loop.run_until_complete(asyncio.sleep(50))
        assert 49 < loop.skipped_s <= 50
    finally:
        loop.close()


def test_no_jump_while_a_thread_works() -> None:
    # A serial port's write runs in a thread; a busy machine makes it slower than the
    # loop's grace. The only timer is a far limit: jumping to it would end the wait.
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(asyncio.to_thread(time.sleep, 0.05), 3600)
        return loop.time() - start

    assert run_warped(main()) < 1.0

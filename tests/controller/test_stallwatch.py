"""The stall watch names a blocked event loop, with the stack that blocks it."""

from __future__ import annotations

import asyncio
import logging
import time

from controller.runtime.stallwatch import StallWatch


def _block_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)


def test_a_blocked_loop_is_reported_once_with_the_blocking_stack(caplog):
    async def main() -> StallWatch:
        watch = StallWatch(asyncio.get_running_loop(), threshold=0.3, beat=0.05)
        watch.start()
        await asyncio.sleep(0.2)
        _block_the_loop_for(1.0)
        await asyncio.sleep(0.3)
        watch.stop()
        return watch

    with caplog.at_level(logging.WARNING, logger="controller.stallwatch"):
        watch = asyncio.run(main())
    assert watch.stalls == 1
    stalled = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert len(stalled) == 1 and "_block_the_loop_for" in stalled[0]
    again = [r.getMessage() for r in caplog.records if "running again" in r.getMessage()]
    assert len(again) == 1


def test_a_busy_but_turning_loop_is_not_reported(caplog):
    async def main() -> StallWatch:
        watch = StallWatch(asyncio.get_running_loop(), threshold=0.3, beat=0.05)
        watch.start()
        for _ in range(20):
            _block_the_loop_for(0.05)
            await asyncio.sleep(0)
        watch.stop()
        return watch

    assert asyncio.run(main()).stalls == 0

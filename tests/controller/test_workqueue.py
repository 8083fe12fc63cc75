import asyncio

import pytest

from controller.runtime.workqueue import ShutDown, WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_duplicate_adds_are_handed_out_once():
    async def go():
        q: WorkQueue[str] = WorkQueue()
        for _ in range(3):
            q.add("a")
        q.add("b")
        got = [await q.get(), await q.get()]
        assert got == ["a", "b"]
        assert len(q) == 0
    run(go())


def test_key_added_while_processing_comes_back_after_done_not_concurrently():
    async def go():
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")  # changed while being reconciled
        assert len(q) == 0  # not handed to a second worker
        q.done(key)
        assert await q.get() == "a"
    run(go())


def test_rate_limited_retries_back_off_exponentially_until_forgotten():
    async def go():
        q: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
        delays = [q.add_rate_limited("a") for _ in range(4)]
        assert delays == [0.01, 0.02, 0.04, 0.04]
        assert await q.get() == "a"
        q.forget("a")
        assert q.failures("a") == 0
    run(go())


def test_add_after_keeps_the_earliest_deadline():
    async def go():
        q: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        q.add_after("a", 0.05)
        q.add_after("a", 10)
        assert await q.get() == "a"
        assert loop.time() - start < 1
    run(go())


def test_shutdown_releases_waiting_workers():
    async def go():
        q: WorkQueue[str] = WorkQueue()
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0.01)
        await q.shutdown()
        with pytest.raises(ShutDown):
            await waiter
    run(go())

"""The background progress poller: a hanging target never delays the others, failures
back off, changes ask for a reconcile, and a forgotten key is never polled again."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from controller.runtime.poller import Poller


def _sync(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(fn)
    def run() -> None:
        asyncio.run(fn())
    return run


async def _run_for(poller: Poller[str, str], seconds: float) -> None:
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@_sync
async def test_hanging_targets_cost_the_good_one_one_first_round_then_nothing():
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen: list[float] = []
    changed: list[str] = []

    async def fetch(target: str) -> str | None:
        if target.startswith("hang"):
            await asyncio.sleep(0.2)  # the fetch's own timeout
            return None
        seen.append(loop.time() - start)
        return f"{len(seen)}%"

    poller: Poller[str, str] = Poller(fetch, interval=0.02, concurrency=4,
                                      max_backoff=5.0, on_change=changed.append)
    for n in range(20):
        poller.track(f"h{n}", f"hang{n}")
    poller.track("good", "good")
    await _run_for(poller, 2.0)
    # Untried, a hanging target looks like any other: the first contact with all 20
    # takes 20 / 4 slots x 0.2 s. From then on the hanging ones back off and share at
    # most half the slots, and the good one is polled at its interval.
    assert seen and seen[0] < 1.3, seen
    after = [t for t in seen if t > 1.4]
    assert len(after) >= 10, seen
    assert poller.last("good") == f"{len(seen)}%"
    assert set(changed) == {"good"}


@_sync
async def test_failures_back_off_and_successes_keep_the_interval():
    calls: dict[str, int] = {"bad": 0, "ok": 0}

    async def fetch(target: str) -> str | None:
        calls[target] += 1
        return None if target == "bad" else "1.00%"

    poller: Poller[str, str] = Poller(fetch, interval=0.05, concurrency=2, max_backoff=10.0)
    poller.track("a", "bad")
    poller.track("b", "ok")
    await _run_for(poller, 1.0)
    assert calls["ok"] >= 10
    # 0.1, 0.2, 0.4, 0.8 s apart: at most 4 or 5 tries in a second.
    assert 2 <= calls["bad"] <= 5, calls


@_sync
async def test_never_two_fetches_of_one_key_and_never_more_than_the_limit():
    running: set[str] = set()
    peak = 0

    async def fetch(target: str) -> str | None:
        nonlocal peak
        assert target not in running
        running.add(target)
        peak = max(peak, len(running))
        await asyncio.sleep(0.05)
        running.discard(target)
        return "5.00%"

    poller: Poller[str, str] = Poller(fetch, interval=0.01, concurrency=3)
    for n in range(10):
        poller.track(str(n), str(n))
    await _run_for(poller, 0.5)
    assert peak == 3


@_sync
async def test_a_value_is_reported_once_per_change_and_forgotten_keys_stop():
    values = iter(["1.00%", "1.00%", "2.00%"] + ["2.00%"] * 100)
    changed: list[str] = []
    fetched: list[str] = []

    async def fetch(target: str) -> str | None:
        fetched.append(target)
        return next(values)

    poller: Poller[str, str] = Poller(fetch, interval=0.02, on_change=changed.append)
    assert poller.track("k", "pod-a") is None
    await _run_for(poller, 0.3)
    assert changed == ["k", "k"]
    assert poller.track("k", "pod-a") == "2.00%"
    # Another pod (a restart, a new IP) starts afresh.
    assert poller.track("k", "pod-b") is None
    poller.forget("k")
    before = len(fetched)
    await _run_for(poller, 0.2)
    assert len(fetched) == before
    assert poller.last("k") is None

"""When the proxy reads its key and certificates again: after max_age, or sooner when a
failed verification says the cached copy may be stale, but never more often than
min_refresh; a failed read keeps the last good value."""

from __future__ import annotations

import asyncio

import pytest

from uploadproxy.proxy.credentials import Cached, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self) -> None:
        self.calls = 0
        self.values: list[str | Exception] = []

    async def fetch(self) -> str:
        self.calls += 1
        v = self.values.pop(0)
        if isinstance(v, Exception):
            raise v
        return v


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_read_once_then_again_after_max_age() -> None:
    clock, src = Clock(), Source()
    src.values = ["k1", "k2"]
    c = Cached(src.fetch, "key", max_age=30, min_refresh=5, clock=clock)

    async def go() -> list[str]:
        out = [await c.get(), await c.get()]
        clock.now += 29
        out.append(await c.get())
        clock.now += 1
        out.append(await c.get())
        return out

    assert run(go()) == ["k1", "k1", "k1", "k2"]
    assert src.calls == 2


def test_stale_rereads_at_most_every_min_refresh() -> None:
    clock, src = Clock(), Source()
    src.values = ["k1", "k2", "k3"]
    c = Cached(src.fetch, "key", max_age=30, min_refresh=5, clock=clock)

    async def go() -> list[str]:
        out = [await c.get()]
        for _ in range(100):  # a flood of forged tokens
            out.append(await c.get(stale=True))
        clock.now += 5
        out.append(await c.get(stale=True))
        return out

    got = run(go())
    assert got[:101] == ["k1"] * 101 and got[-1] == "k2"
    assert src.calls == 2


def test_a_failed_read_keeps_the_last_good_value_and_none_is_unavailable() -> None:
    clock, src = Clock(), Source()
    src.values = [Unavailable("ConfigMap cdi/x does not exist"), "k1",
                  Unavailable("cannot read ConfigMap cdi/x: ApiError")]
    c = Cached(src.fetch, "key", max_age=30, min_refresh=5, clock=clock)

    async def go() -> str:
        with pytest.raises(Unavailable, match="does not exist"):
            await c.get()
        clock.now += 30
        assert await c.get() == "k1"
        clock.now += 30
        return await c.get()

    assert run(go()) == "k1"
    assert src.calls == 3

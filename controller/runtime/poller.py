"""Polling many endpoints in the background, so that no reconcile waits on one.

A reconcile says which target a key should be polled at (`track`) and reads the last
value from the cache (`last`); one task of its own does the polling, never more than
`concurrency` fetches at once and never two for one key, each bounded by the fetch's own
timeout. A target that fails is polled less often (doubling up to `max_backoff`), after
the healthy ones and in at most half the slots, so hanging endpoints hold a few slots for
one timeout now and then, and the others keep their turn. When a value changes,
`on_change(key)` asks for the key to be reconciled, so no reconcile needs to come back
on a timer to learn it.

Generic: a key is any hashable, a target any hashable the fetch understands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", bound=Hashable)

Fetch = Callable[[T], Awaitable[str | None]]
"""One poll of a target: its value, or None when it had none (it failed, said nothing
usable, or was refused); it must bound its own time."""


@dataclass
class _Entry(Generic[T]):
    target: T
    due: float
    value: str | None = None
    failures: int = 0
    busy: bool = False


class Poller(Generic[K, T]):
    def __init__(self, fetch: Fetch[T], *, interval: float = 2.0, concurrency: int = 8,
                 max_backoff: float = 30.0,
                 on_change: Callable[[K], None] = lambda _k: None,
                 clock: Callable[[], float] | None = None) -> None:
        self._fetch = fetch
        self.interval = interval
        self._limit = concurrency
        self._failing_limit = max(1, concurrency // 2)
        self._max_backoff = max_backoff
        self._on_change = on_change
        self._clock = clock
        self._entries: dict[K, _Entry[T]] = {}
        self._wake = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], bool] = {}
        """Running fetches, each with whether its target was failing when it started."""

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def track(self, key: K, target: T) -> str | None:
        """Poll `target` for `key` from now on; the last value polled (None: none yet).
        A new target (a new pod, a new address) starts afresh."""
        entry = self._entries.get(key)
        if entry is None or entry.target != target:
            self._entries[key] = _Entry(target, self._now())
            self._wake.set()
            return None
        return entry.value

    def last(self, key: K) -> str | None:
        entry = self._entries.get(key)
        return entry.value if entry else None

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def in_flight(self) -> int:
        return len(self._tasks)

    async def _poll(self, key: K, entry: _Entry[T]) -> None:
        try:
            value = await self._fetch(entry.target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fetch must not stop the loop
            log.warning("poll failed key=%s error=%s", key, exc)
            value = None
        finally:
            entry.busy = False
            self._wake.set()  # a slot is free
        if value is None:
            entry.failures += 1
            delay = min(self.interval * 2.0 ** entry.failures, self._max_backoff)
        else:
            entry.failures = 0
            delay = self.interval
        entry.due = self._now() + delay
        if value is not None and value != entry.value and self._entries.get(key) is entry:
            entry.value = value
            self._on_change(key)

    def _start_due(self, now: float) -> float:
        """Start what is due, healthy targets first and failing ones in at most half the
        slots (so hanging endpoints never hold them all); when to look again."""
        soonest = now + self.interval
        due: list[tuple[bool, float, K, _Entry[T]]] = []
        for key, entry in self._entries.items():
            if entry.busy:
                continue
            if entry.due <= now:
                due.append((entry.failures > 0, entry.due, key, entry))
            else:
                soonest = min(soonest, entry.due)
        due.sort(key=lambda d: (d[0], d[1]))
        failing = sum(self._tasks.values())
        for is_failing, _, key, entry in due:
            if len(self._tasks) >= self._limit:
                break
            if is_failing and failing >= self._failing_limit:
                continue
            failing += is_failing
            entry.busy = True
            task = asyncio.create_task(self._poll(key, entry))
            self._tasks[task] = is_failing
            task.add_done_callback(self._done)
        return soonest

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            while True:
                now = self._now()
                soonest = self._start_due(now)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.01, soonest - now))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

"""The manager: informers feed a work queue, workers run one reconcile per key.

Generic: a key is `(kind, namespace, name)`; the domain says which keys an object change
concerns (`Router`) and what a key's reconcile does (`Dispatch`). A reconcile returns
seconds until the key should be looked at again, or None; an exception re-queues the key
with backoff, so one bad object never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from controller.runtime.informer import Handler, Informer
from controller.runtime.kube import Conflict
from controller.runtime.metrics import Metrics
from controller.runtime.objects import Obj
from controller.runtime.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
Router = Callable[[str, Obj], Iterable[Key]]
"""(informer kind, changed object) -> the keys to reconcile."""
Dispatch = Callable[[Key], Awaitable[float | None]]


class Manager:
    def __init__(self, metrics: Metrics, *, workers: int = 4) -> None:
        self.metrics = metrics
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self._router: Router = lambda _kind, _obj: ()

    def route_with(self, router: Router) -> None:
        self._router = router

    def handler(self, kind: str) -> Handler:
        """An informer callback that queues the keys `kind`'s change concerns."""
        def on_change(old: Obj | None, new: Obj | None) -> None:
            for key in self._router(kind, new if new is not None else old or {}):
                self.queue.add(key)
        return on_change

    async def _worker(self, dispatch: Dispatch) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            start = time.perf_counter()
            result = "ok"
            try:
                again = await dispatch(key)
                self.queue.forget(key)
                if again:
                    self.queue.add_after(key, again)
            except asyncio.CancelledError:
                raise
            except Conflict:
                result = "conflict"
                self.queue.add_rate_limited(key)
            except Exception as exc:  # one bad object must not stop the others
                result = "error"
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile failed key=%s retry_in=%.2fs error=%s",
                            "/".join(key), delay, exc)
            finally:
                self.queue.done(key)
                self.metrics.reconciles.labels(key[0], result).inc()
                self.metrics.latency.labels(key[0]).observe(time.perf_counter() - start)
                self.metrics.queue_depth.set(len(self.queue))

    async def run(self, informers: list[Informer], dispatch: Dispatch, *,
                  initial: Iterable[Key] = (),
                  on_synced: Callable[[], Awaitable[None]] | None = None,
                  on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start informers, wait until every cache is synced, then reconcile forever."""
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.resource.plural}")
                 for i in informers]
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            log.info("caches synced informers=%d", len(informers))
            if on_synced is not None:
                await on_synced()
            for key in initial:
                self.queue.add(key)
            workers = [asyncio.create_task(self._worker(dispatch), name=f"worker-{n}")
                       for n in range(self.workers)]
            tasks += workers
            await asyncio.gather(*workers)
        finally:
            await self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if on_stop is not None:
                await on_stop()

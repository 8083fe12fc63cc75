"""List-then-watch of one resource, with a local cache and a callback per change.

Why: the node agent reacts to pods, PVCs, PVs, Services and EndpointSlices the way
client-go informers do (level-triggered, re-listing when the watch expires), so it
keeps working across API server restarts and long runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from localcluster.api import Api, Gone, Obj

log = logging.getLogger(__name__)

Handler = Callable[[str, Obj], None]


def key_of(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


class Informer:
    """Calls ``handler(event_type, obj)`` for every add/modify/delete, in one thread."""

    def __init__(
        self,
        api: Api,
        path: str,
        handler: Handler,
        stop: threading.Event,
        **params: str,
    ) -> None:
        self.api = api
        self.path = path
        self.handler = handler
        self.params = params
        self.stop = stop
        self.store: dict[str, Obj] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    def start(self) -> Informer:
        self.thread.start()
        return self

    def items(self) -> list[Obj]:
        with self.lock:
            return list(self.store.values())

    def get(self, key: str) -> Obj | None:
        with self.lock:
            return self.store.get(key)

    def _dispatch(self, kind: str, obj: Obj) -> None:
        try:
            self.handler(kind, obj)
        except Exception:
            log.exception("handler failed path=%s key=%s", self.path, key_of(obj))

    def _relist(self) -> str:
        listing = self.api.get(self.path, **self.params)
        fresh = {key_of(o): o for o in listing.get("items", [])}
        with self.lock:
            gone = [o for k, o in self.store.items() if k not in fresh]
            self.store = fresh
        for o in gone:
            self._dispatch("DELETED", o)
        for o in fresh.values():
            self._dispatch("ADDED", o)
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _run(self) -> None:
        rv = ""
        while not self.stop.is_set():
            try:
                if not rv:
                    rv = self._relist()
                for event in self.api.watch(self.path, rv, **self.params):
                    obj = event["object"]
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    kind = event["type"]
                    if kind == "BOOKMARK":
                        continue
                    with self.lock:
                        if kind == "DELETED":
                            self.store.pop(key_of(obj), None)
                        else:
                            self.store[key_of(obj)] = obj
                    self._dispatch(kind, obj)
                    if self.stop.is_set():
                        return
            except Gone:
                rv = ""
            except Exception as e:
                if self.stop.is_set():
                    return
                log.warning("watch failed path=%s error=%s", self.path, e)
                rv = ""
                time.sleep(1)

"""An informer: list, then watch from the list's resourceVersion, re-list on 410 Gone.

It keeps a cache of the objects (without managedFields, which the controller never reads
and which would triple its memory) and calls `on_change(old, new)` for every add, update
and delete (new is None). Writes the controller makes are put into the cache at once
(`upsert`) so the next reconcile never acts on the state from before its own write; a
watch event older than the cached object is then ignored.

`indexers` name functions of an object (e.g. "the source a DataVolume clones from");
`by_index(name, value)` finds the cached objects for which that function yields `value`.
An `optional` informer is for an API that may not be served (the VolumeSnapshot CRDs):
while the API answers 404 its cache is empty and synced, and it looks again now and then
instead of logging a failure loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

Key = tuple[str, str]
Handler = Callable[[Obj | None, Obj | None], None]
Indexer = Callable[[Obj], Iterable[str]]
ABSENT_RECHECK_SECONDS = 30.0


def key_of(obj: Obj) -> Key:
    return o.namespace(obj), o.name(obj)


def _rv(obj: Obj | None) -> int:
    text = str(o.meta(obj).get("resourceVersion", "0")) if obj else "0"
    return int(text) if text.isdigit() else 0


def _slim(obj: Obj) -> Obj:
    o.meta(obj).pop("managedFields", None)
    return obj


class Informer:
    def __init__(self, client: kube.Kube, resource: kube.Resource, on_change: Handler, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 namespace: str | None = None, kind: str = "", api_version: str = "",
                 index_label: str | None = None,
                 index_annotation: str | None = None,
                 indexers: Mapping[str, Indexer] | None = None,
                 optional: bool = False) -> None:
        self.client = client
        self.resource = resource
        self.on_change = on_change
        self.selector = label_selector
        self.field_selector = field_selector
        self.namespace = namespace
        self.kind = kind
        self.api_version = api_version
        self.index_label = index_label
        self.index_annotation = index_annotation
        self.store: dict[Key, Obj] = {}
        self._uids: dict[str, Key] = {}
        self._labelled: dict[str, set[Key]] = {}
        self.indexers = dict(indexers or {})
        self._indexed: dict[str, dict[str, set[Key]]] = {n: {} for n in self.indexers}
        self.optional = optional
        self.absent = False
        """An optional informer whose API is not served (404) right now."""
        self._annotated: dict[str, set[Key]] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.store.get((namespace, name))

    def by_uid(self, uid: str) -> Obj | None:
        k = self._uids.get(uid)
        return self.store.get(k) if k is not None else None

    def by_label(self, value: str) -> list[Obj]:
        """Objects whose `index_label` has `value` (e.g. a transfer's owner UID)."""
        return [self.store[k] for k in sorted(self._labelled.get(value, ())) if k in self.store]

    def by_index(self, index: str, value: str) -> list[Obj]:
        """Objects for which the indexer `index` yields `value`."""
        keys = self._indexed.get(index, {}).get(value, ())
        return [self.store[k] for k in sorted(keys) if k in self.store]

    def by_annotation(self, value: str) -> list[Obj]:
        """Objects whose `index_annotation` has `value` (e.g. a clone's source)."""
        return [self.store[k] for k in sorted(self._annotated.get(value, ())) if k in self.store]

    def _index(self, k: Key, old: Obj | None, new: Obj | None) -> None:
        for index, fn in self.indexers.items():
            table = self._indexed[index]
            if old is not None:
                for value in fn(old):
                    table.get(value, set()).discard(k)
            if new is not None:
                for value in fn(new):
                    table.setdefault(value, set()).add(k)
        if old is not None:
            self._uids.pop(o.uid(old), None)
            if self.index_label:
                keys = self._labelled.get(o.labels(old).get(self.index_label, ""))
                if keys is not None:
                    keys.discard(k)
            if self.index_annotation:
                keys = self._annotated.get(o.annotations(old).get(self.index_annotation, ""))
                if keys is not None:
                    keys.discard(k)
        if new is not None:
            self._uids[o.uid(new)] = k
            value = o.labels(new).get(self.index_label, "") if self.index_label else ""
            if value:
                self._labelled.setdefault(value, set()).add(k)
            noted = (o.annotations(new).get(self.index_annotation, "")
                     if self.index_annotation else "")
            if noted:
                self._annotated.setdefault(noted, set()).add(k)

    def _put(self, k: Key, obj: Obj) -> None:
        self._index(k, self.store.get(k), obj)
        self.store[k] = _slim(obj)

    def _drop(self, k: Key) -> None:
        self._index(k, self.store.pop(k, None), None)

    def items(self) -> list[Obj]:
        return list(self.store.values())

    def upsert(self, obj: Obj) -> None:
        """Record an object the controller just wrote (if newer than the cached one)."""
        obj.setdefault("kind", self.kind)
        obj.setdefault("apiVersion", self.api_version)
        k = key_of(obj)
        old = self.store.get(k)
        if _rv(obj) >= _rv(old):
            self._put(k, obj)

    def forget(self, namespace: str, name: str) -> None:
        self._drop((namespace, name))

    def _params(self) -> dict[str, str]:
        params = {"labelSelector": self.selector} if self.selector else {}
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params

    async def _list(self) -> str:
        doc = await self.client.list(self.resource.path(self.namespace), self._params())
        fresh: dict[Key, Obj] = {}
        for item in doc.get("items") or []:
            item.setdefault("kind", self.kind)
            item.setdefault("apiVersion", self.api_version)
            fresh[key_of(item)] = _slim(item)
        old_store, self.store = self.store, fresh
        self._uids, self._labelled = {}, {}
        self._indexed = {n: {} for n in self.indexers}
        for k, new in fresh.items():
            self._index(k, None, new)
        for k, new in fresh.items():
            old = old_store.get(k)
            if old is None or _rv(old) != _rv(new):
                self.on_change(old, new)
        for k, old in old_store.items():
            if k not in fresh:
                self.on_change(old, None)
        self.relists += 1
        return str(o.meta(doc).get("resourceVersion", ""))

    def _apply(self, event: Obj) -> str | None:
        etype, obj = event.get("type"), event.get("object") or {}
        rv = str(o.meta(obj).get("resourceVersion", ""))
        if etype == "BOOKMARK":
            return rv
        obj.setdefault("kind", self.kind)
        obj.setdefault("apiVersion", self.api_version)
        k = key_of(obj)
        old = self.store.get(k)
        if etype == "DELETED":
            self._drop(k)
            self.on_change(old, None)
        elif old is None or _rv(obj) >= _rv(old):
            # Equal: the echo of our own write, already cached by `upsert` but not yet
            # routed; the watch is what tells the others (owners) about it.
            self._put(k, obj)
            self.on_change(old, obj)
        return rv

    async def _absent(self) -> None:
        """The optional API is not served: an empty, synced cache; look again later."""
        if not self.absent:
            log.info("api not served resource=%s", self.resource.plural)
        self.absent = True
        for k in list(self.store):
            old = self.store.get(k)
            self._drop(k)
            self.on_change(old, None)
        self.synced.set()
        await asyncio.sleep(ABSENT_RECHECK_SECONDS)

    async def run(self) -> None:
        """List and watch forever; errors re-list after a short backoff."""
        backoff = 0.2
        rv = ""
        while True:
            try:
                if not rv:
                    rv = await self._list()
                    if self.absent:
                        log.info("api served resource=%s", self.resource.plural)
                    self.absent = False
                    self.synced.set()
                async for event in self.client.watch(self.resource.path(self.namespace), rv,
                                                     self._params()):
                    rv = self._apply(event) or rv
                    backoff = 0.2
            except kube.Gone:
                rv = ""  # too old: list again, diffing against the cache
            except kube.NotFound as exc:
                rv = ""
                if self.optional:
                    await self._absent()
                else:
                    log.warning("watch failed resource=%s error=%s", self.resource.plural, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: start over
                log.warning("watch failed resource=%s error=%s", self.resource.plural, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                rv = ""

"""The one place that applies planned actions to the API.

In order, each idempotent: a create answered 409 is done (an earlier reconcile, or
another replica, made it; the watch brings it), a delete answered 404 is done. Every
object the API returns goes into its cache at once, so the next plan never acts on the
world from before its own write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from controller.runtime import kube
from controller.runtime.actions import Action, Create, CreateCopy, Delete, Patch
from controller.runtime.informer import Informer
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, client: kube.Kube, caches: Iterable[Informer] = ()) -> None:
        self.client = client
        self._caches = {i.resource: i for i in caches}

    def _cache(self, resource: kube.Resource) -> Informer | None:
        return self._caches.get(resource)

    async def apply(self, actions: Iterable[Action]) -> list[tuple[kube.Resource, Obj]]:
        """Apply in order; the objects this call created (as the API returned them)."""
        created: list[tuple[kube.Resource, Obj]] = []
        for action in actions:
            made = await self.apply_one(action)
            if made is not None:
                created.append((action.resource, made))
        return created

    async def apply_one(self, action: Action) -> Obj | None:
        cache = self._cache(action.resource)
        plural = action.resource.plural
        if isinstance(action, Create):
            try:
                created = await self.client.create(action.resource.path(action.namespace),
                                                   action.body)
            except kube.Conflict:
                return None
            log.info("created kind=%s ns=%s name=%s", plural, action.namespace, action.name)
            if cache is not None:
                cache.upsert(created)
            return created
        elif isinstance(action, CreateCopy):
            source = await self.client.get(
                action.resource.path(action.source_namespace, action.source_name))
            if source is None:
                log.warning("copy source missing kind=%s ns=%s name=%s", plural,
                            action.source_namespace, action.source_name)
                return None
            body = {**action.body, "data": source.get("data") or {}}
            if source.get("binaryData"):
                body["binaryData"] = source["binaryData"]
            return await self.apply_one(Create(action.resource, action.namespace, body))
        elif isinstance(action, Patch):
            updated = await self.client.merge_patch(
                action.resource.path(action.namespace, action.name, action.sub), action.patch)
            if cache is not None:
                cache.upsert(updated)
        elif isinstance(action, Delete):
            await self.client.delete(action.resource.path(action.namespace, action.name),
                                     uid=action.uid)
            log.info("deleted kind=%s ns=%s name=%s", plural, action.namespace, action.name)
        return None

"""The API adapter and the informer against the real API server (not a fake)."""

from __future__ import annotations

import asyncio

import pytest

from controller.runtime import kube
from controller.runtime.informer import Informer

pytestmark = [pytest.mark.cluster]


def test_informer_sees_adds_updates_and_deletes_and_errors_are_typed(cluster, namespace):
    cms = kube.Resource("", "v1", "configmaps")

    async def go():
        client = kube.Kube(kube.load_config(str(cluster.kubeconfig)))
        seen: list[tuple[str, str]] = []

        def on_change(old, new):
            obj = new if new is not None else old
            if obj["metadata"]["namespace"] == namespace and obj["metadata"]["name"] == "a":
                kind = "add" if old is None else "delete" if new is None else "update"
                seen.append((kind, obj["metadata"]["name"]))

        inf = Informer(client, cms, on_change, kind="ConfigMap", api_version="v1")
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.synced.wait(), 20)
            path = cms.path(namespace)
            await client.create(path, {"metadata": {"name": "a"}, "data": {"k": "1"}})
            await client.merge_patch(cms.path(namespace, "a"), {"data": {"k": "2"}})
            await client.delete(cms.path(namespace, "a"))
            for _ in range(100):
                if ("delete", "a") in seen:
                    break
                await asyncio.sleep(0.1)
            with pytest.raises(kube.Conflict):
                await client.create(path, {"metadata": {"name": "b"}})
                await client.create(path, {"metadata": {"name": "b"}})
            assert await client.get(cms.path(namespace, "missing")) is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
        return seen

    seen = asyncio.run(asyncio.wait_for(go(), 60))
    assert seen[:3] == [("add", "a"), ("update", "a"), ("delete", "a")]


def test_executor_applies_a_plan_twice_with_the_same_result(cluster, namespace):
    """409 on create and 404 on delete are done; writes land in the cache at once."""
    from controller.runtime.actions import Create, Delete, Patch
    from controller.runtime.executor import Executor

    cms = kube.CONFIGMAPS

    async def go():
        client = kube.Kube(kube.load_config(str(cluster.kubeconfig)))
        inf = Informer(client, cms, lambda old, new: None, kind="ConfigMap",
                       api_version="v1", namespace=namespace)
        try:
            ex = Executor(client, [inf])
            plan = [Create(cms, namespace, {"metadata": {"name": "p"}, "data": {"k": "1"}}),
                    Patch(cms, namespace, "p", {"data": {"k": "2"}})]
            await ex.apply(plan)
            await ex.apply(plan)  # the create is answered 409: done, not an error
            assert inf.get(namespace, "p")["data"] == {"k": "2"}
            live = await client.get(cms.path(namespace, "p"))
            assert live["data"] == {"k": "2"}
            gone = [Delete(cms, namespace, "p", live["metadata"]["uid"])]
            await ex.apply(gone)
            await ex.apply(gone)  # 404: done
            assert await client.get(cms.path(namespace, "p")) is None
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(go(), 60))

"""Clone routing: what waits on a source hears about it (pure keys + the informer index)."""

import asyncio

from aiohttp import web

from controller import clonesource
from controller.routing import Owners, keys_for
from controller.runtime.informer import Informer
from controller.runtime.kube import DATAVOLUMES, VOLUMESNAPSHOTS, Config, Kube
from tests.controller import clonefactories as cf


def _deps(table):
    return Owners(dependents=lambda key: list(table.get(key, [])))


def test_a_source_pvc_change_queues_the_datavolumes_and_datasources_waiting_on_it():
    owners = _deps({"PersistentVolumeClaim/g/golden": [("dv", "ns", "t"),
                                                       ("datasource", "g", "fedora")]})
    pvc = {"metadata": {"name": "golden", "namespace": "g"}}
    assert keys_for("pvc", pvc, owners) == [("pvc", "g", "golden"), ("dv", "ns", "t"),
                                            ("datasource", "g", "fedora")]


def test_a_datavolume_change_reaches_the_datasources_of_its_pvc():
    owners = _deps({"PersistentVolumeClaim/g/golden": [("datasource", "g", "fedora")]})
    dv = {"metadata": {"name": "golden", "namespace": "g"}}
    assert keys_for("dv", dv, owners) == [("dv", "g", "golden"), ("datasource", "g", "fedora")]


def test_a_datasource_change_queues_itself_and_the_sourceref_datavolumes():
    owners = _deps({"DataSource/g/fedora": [("dv", "ns", "vm-disk")]})
    ds = {"metadata": {"name": "fedora", "namespace": "g"}}
    assert keys_for("datasource", ds, owners) == [("datasource", "g", "fedora"),
                                                  ("dv", "ns", "vm-disk")]


def test_a_smart_clone_snapshot_reaches_its_datavolume_by_owner_label():
    dv = {"metadata": {"name": "t", "namespace": "ns", "uid": "u1"}}
    owners = Owners(dv=lambda uid: dv if uid == "u1" else None)
    snap = {"metadata": {"name": "cdi-tmp-u1", "namespace": "ns",
                         "labels": {"cdi.kubevirt.io/owner-uid": "u1"}}}
    assert keys_for("snapshot", snap, owners) == [("dv", "ns", "t")]


def test_the_informer_index_follows_updates_and_deletes():
    async def run():
        inf = Informer(None, DATAVOLUMES, lambda _o, _n: None,  # type: ignore[arg-type]
                       indexers={clonesource.INDEX: clonesource.dv_index_keys})
        dv = cf.clone_dv("t", src_ns="g")
        dv["metadata"]["resourceVersion"] = "1"
        inf.upsert(dv)
        assert [o["metadata"]["name"] for o in
                inf.by_index(clonesource.INDEX, "PersistentVolumeClaim/g/golden")] == ["t"]
        moved = cf.clone_dv("t", src_ns="g", src="other")
        moved["metadata"]["resourceVersion"] = "2"
        inf.upsert(moved)
        assert inf.by_index(clonesource.INDEX, "PersistentVolumeClaim/g/golden") == []
        assert len(inf.by_index(clonesource.INDEX, "PersistentVolumeClaim/g/other")) == 1
        inf.forget("ns", "t")
        assert inf.by_index(clonesource.INDEX, "PersistentVolumeClaim/g/other") == []
    asyncio.run(run())


def test_an_optional_informer_for_an_api_the_server_does_not_serve_is_synced_and_empty():
    """A real HTTP server answering 404 for the VolumeSnapshot API (no CRDs installed)."""
    async def run():
        hits = []

        async def not_found(request):
            hits.append(request.path)
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                      "message": "the server could not find the requested"
                                                 " resource"}, status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", not_found)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with Kube(Config(server=f"http://127.0.0.1:{port}")) as client:
            inf = Informer(client, VOLUMESNAPSHOTS, lambda _o, _n: None, optional=True)
            task = asyncio.create_task(inf.run())
            await asyncio.wait_for(inf.synced.wait(), 5)
            assert inf.absent and inf.items() == []
            await asyncio.sleep(0.3)
            assert hits == ["/apis/snapshot.storage.k8s.io/v1/volumesnapshots"]  # no loop
            task.cancel()
        await runner.cleanup()
    asyncio.run(run())

"""The clone webhooks over real HTTP, for every answer that needs no API lookup (same
namespace, not a clone, bad input) and for an API server that cannot be reached (the
client points at a closed port): the answer is a precise refusal, never a hang or a 500
from the server itself. Lookups against the real API server:
tests/controller/e2e/test_clone_authorization.py."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import aiohttp
import pytest
from aiohttp import web

from cdicontract import clone, clonetoken
from controller import clonekey, clonemutate, webhook
from controller.runtime import kube

KEY = clonekey.generate()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def review(obj, *, operation="CREATE", resource=("cdi.kubevirt.io", "datavolumes"),
           user="alice", namespace="team"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "rev-1", "operation": operation, "namespace": namespace,
                        "resource": {"group": resource[0], "version": "v1",
                                     "resource": resource[1]},
                        "userInfo": {"username": user, "groups": ["system:authenticated"]},
                        "object": obj}}


def dv(source, name="vm-disk", ns="team", **meta):
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "namespace": ns, **meta},
            "spec": {"source": source, "storage": {}}}


def post_all(posts: list[tuple[str, object]]) -> list[tuple[int, object]]:
    async def go():
        client = kube.Kube(kube.Config(server=f"http://127.0.0.1:{closed_port()}"))
        runner = web.AppRunner(webhook.app(clonemutate.Mutator(client, KEY)))
        await runner.setup()
        port = closed_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                for path, body in posts:
                    data = body if isinstance(body, bytes) else json.dumps(body).encode()
                    async with s.post(f"http://127.0.0.1:{port}{path}", data=data) as r:
                        text = await r.text()
                        out.append((r.status, json.loads(text) if r.status == 200 else text))
        finally:
            await runner.cleanup()
            await client.close()
        return out

    return asyncio.run(go())


def answer(path, body):
    status, doc = post_all([(path, body)])[0]
    assert status == 200, doc
    return doc["response"]


def patched_token(response) -> str:
    patch = json.loads(base64.b64decode(response["patch"]))
    value = patch[0]["value"]
    return value[clone.TOKEN_ANNOTATION] if isinstance(value, dict) else value


def test_a_same_namespace_clone_is_signed_without_asking_anyone():
    r = answer(clonemutate.DV_PATH, review(dv({"pvc": {"namespace": "team", "name": "src"}})))
    assert r["allowed"] is True and r["uid"] == "rev-1"
    ref = clonetoken.CloneRef("team", "src", "team", "vm-disk")
    clonetoken.verify(patched_token(r), KEY.public_key(), ref)


def test_an_object_without_namespace_is_in_the_requests_namespace():
    obj = dv({"pvc": {"name": "src"}}, ns="")
    r = answer(clonemutate.DV_PATH, review(obj, namespace="team"))
    ref = clonetoken.CloneRef("team", "src", "team", "vm-disk")
    clonetoken.verify(patched_token(r), KEY.public_key(), ref)


def test_a_legacy_same_namespace_pvc_is_signed_for_the_pvc():
    pvc = {"metadata": {"name": "legacy", "namespace": "team",
                        "annotations": {clone.CLONE_REQUEST_ANNOTATION: "team/src"}}}
    r = answer(clonemutate.PVC_PATH, review(pvc, resource=("", "persistentvolumeclaims")))
    ref = clonetoken.CloneRef("team", "src", "team", "legacy")
    clonetoken.verify(patched_token(r), KEY.public_key(), ref)


@pytest.mark.parametrize(("path", "body"), [
    pytest.param(clonemutate.DV_PATH, review(dv({"blank": {}})), id="not-a-clone"),
    pytest.param(clonemutate.DV_PATH, review(dv({"pvc": {"namespace": "golden", "name": "s"}}),
                                             operation="UPDATE"), id="update"),
    pytest.param(clonemutate.PVC_PATH, review({"metadata": {"name": "p"}},
                                              resource=("", "persistentvolumeclaims")),
                 id="pvc-without-clone-request"),
    pytest.param(clonemutate.PVC_PATH, review({"metadata": {
        "name": "p", "annotations": {clone.CLONE_REQUEST_ANNOTATION: "golden/s"},
        "ownerReferences": [{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                             "name": "d", "uid": "u"}]}},
        resource=("", "persistentvolumeclaims")), id="a-datavolumes-own-pvc"),
])
def test_what_is_not_a_new_clone_passes_untouched(path, body):
    assert answer(path, body) == {"uid": "rev-1", "allowed": True}


@pytest.mark.parametrize(("body", "message"), [
    pytest.param(review(dv({"pvc": {"namespace": "golden", "name": "s"}}, name="",
                           generateName="vm-")),
                 "a clone needs metadata.name", id="generateName"),
    pytest.param(review(dv({"pvc": {"namespace": "golden", "name": ""}})),
                 "names no PersistentVolumeClaim", id="no-source-name"),
    pytest.param(review(dv({"pvc": {"namespace": "golden", "name": "s"}})),
                 "clone authorization: lookup failed", id="api-unreachable"),
    pytest.param(review({**dv(None), "spec": {"sourceRef": {"kind": "DataSource",
                                                            "name": "f"}}}),
                 "clone authorization: lookup failed", id="api-unreachable-datasource"),
])
def test_a_clone_that_cannot_be_authorised_is_refused_with_the_reason(body, message):
    r = answer(clonemutate.DV_PATH, body)
    assert r["allowed"] is False
    assert message in r["status"]["message"]
    assert "patch" not in r


def test_a_malformed_clone_request_is_refused():
    pvc = {"metadata": {"name": "p", "annotations": {clone.CLONE_REQUEST_ANNOTATION: "x"}}}
    r = answer(clonemutate.PVC_PATH, review(pvc, resource=("", "persistentvolumeclaims")))
    assert r["allowed"] is False and "<namespace>/<name>" in r["status"]["message"]


def test_bodies_that_are_not_reviews_of_the_right_kind_are_400():
    results = post_all([
        (clonemutate.DV_PATH, b"not json"),
        (clonemutate.DV_PATH, {"kind": "nothing"}),
        (clonemutate.DV_PATH, review({"metadata": {}}, resource=("", "persistentvolumeclaims"))),
        (clonemutate.PVC_PATH, review(dv({"blank": {}}))),
    ])
    assert [status for status, _ in results] == [400, 400, 400, 400]


def test_without_a_mutator_only_the_validating_webhook_is_served():
    paths = {r.get_info().get("path") for r in webhook.app().router.resources()}
    assert clonemutate.DV_PATH not in paths and webhook.PATH in paths

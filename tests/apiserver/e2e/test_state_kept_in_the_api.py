"""The signing key and serving certificate as kept in the API: created once even when
replicas race, never overwritten when broken, and the APIService's caBundle healed.

These drive the server's own modules (kubeapi, signingkey, tls) against the real
kube-apiserver as the cluster admin, in a namespace of their own.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from apiserver import kubeapi, signingkey, tls
from cdicontract import upload, uploadtoken
from tests.apiserver.e2e.conftest import APISERVICE_PATH, NS, TokenApi

pytestmark = pytest.mark.cluster


def client(cluster: Any) -> kubeapi.Kube:
    return kubeapi.Kube(kubeapi.load_config(str(cluster.kubeconfig)))


def test_racing_replicas_end_up_with_one_key(cluster: Any, namespace: str):
    async def go() -> list[signingkey.SigningKey]:
        async with client(cluster) as kube:
            keys = await asyncio.gather(*(signingkey.ensure(kube, namespace)
                                          for _ in range(4)))
            written = await asyncio.gather(*(signingkey.publish(kube, namespace, k)
                                             for k in keys))
            assert written.count(True) >= 1
            return list(keys)

    keys = asyncio.run(go())
    assert all(k == keys[0] for k in keys)
    api = cluster.api()
    cm = api.get(f"/api/v1/namespaces/{namespace}/configmaps/{upload.PUBLIC_KEY_CONFIGMAP}")
    token = uploadtoken.sign(keys[0].loaded, namespace="ns", pvc="p")
    assert uploadtoken.verify(token, cm["data"]["id_rsa.pub"].encode()).name == "p"


def test_a_broken_key_secret_stops_the_server_and_is_left_as_it_is(cluster: Any,
                                                                  namespace: str):
    api = cluster.api()
    bad = base64.b64encode(b"not a key").decode()
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": upload.SIGNING_KEY_SECRET}, "data": {"id_rsa": bad}})

    async def go() -> None:
        async with client(cluster) as kube:
            await signingkey.ensure(kube, namespace)

    with pytest.raises(signingkey.BadKey, match="not a PEM private key"):
        asyncio.run(go())
    secret = api.get(f"/api/v1/namespaces/{namespace}/secrets/{upload.SIGNING_KEY_SECRET}")
    assert secret["data"] == {"id_rsa": bad}


def test_a_stale_public_key_configmap_is_corrected(cluster: Any, namespace: str):
    api = cluster.api()
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": upload.PUBLIC_KEY_CONFIGMAP}, "data": {"id_rsa.pub": "old"}})

    async def go() -> tuple[signingkey.SigningKey, bool, bool]:
        async with client(cluster) as kube:
            key = await signingkey.ensure(kube, namespace)
            return (key, await signingkey.publish(kube, namespace, key),
                    await signingkey.publish(kube, namespace, key))

    key, first, second = asyncio.run(go())
    assert (first, second) == (True, False)
    cm = api.get(f"/api/v1/namespaces/{namespace}/configmaps/{upload.PUBLIC_KEY_CONFIGMAP}")
    assert cm["data"]["id_rsa.pub"] == key.public_pem.decode()


def test_a_caBundle_removed_by_a_reapply_is_written_back(token_api: TokenApi):
    token_api.cluster.kubectl("patch", "apiservice", APISERVICE_PATH.rsplit("/", 1)[1],
                              "--type=json",
                              "-p", '[{"op": "remove", "path": "/spec/caBundle"}]')

    async def go() -> tuple[bool, bool]:
        async with client(token_api.cluster) as kube:
            serving = await tls.ensure_serving_cert(kube, NS)  # the running server's
            return (await tls.ensure_ca_bundle(kube, serving),
                    await tls.ensure_ca_bundle(kube, serving))

    assert asyncio.run(go()) == (True, False)
    secret = token_api.api.get(f"/api/v1/namespaces/{NS}/secrets/{tls.SECRET_NAME}")
    assert token_api.api.get(APISERVICE_PATH)["spec"]["caBundle"] == secret["data"]["ca.crt"]
    out = token_api.create("default", "disk")  # the aggregator trusts the server again
    assert out.returncode == 0

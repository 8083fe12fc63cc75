"""The upload CAs and the proxy's client certificate as the controller keeps them in the
API: created once, kept while usable, and a client certificate the client CA did not
issue (an earlier install's, or one a test left) re-issued in place, so the upload
servers do not refuse every upload through the proxy. Drives the controller's own
`authority.ensure` against the real kube-apiserver, in a namespace of its own."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from cdicontract import upload
from controller import certs
from controller.runtime import kube
from controller.transfers.upload import authority

pytestmark = pytest.mark.cluster


def ensure(cluster: Any, namespace: str) -> authority.Authority:
    async def go() -> authority.Authority:
        async with kube.Kube(kube.load_config(str(cluster.kubeconfig))) as client:
            return await authority.ensure(client, namespace)
    return asyncio.run(go())


def client_secret(cluster: Any, namespace: str) -> dict[str, Any]:
    return cluster.api().get(  # type: ignore[no-any-return]
        f"/api/v1/namespaces/{namespace}/secrets/{upload.PROXY_CLIENT_CERT_SECRET}")


def pair(secret: dict[str, Any]) -> certs.KeyPair:
    data = secret["data"]
    return certs.KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))


def test_a_usable_client_certificate_is_kept(cluster: Any, namespace: str) -> None:
    first = ensure(cluster, namespace)
    made = client_secret(cluster, namespace)
    again = ensure(cluster, namespace)
    assert again == first
    kept = client_secret(cluster, namespace)
    assert kept["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert certs.leaf_problem(pair(kept), first.client_ca,
                              common_name=upload.CLIENT_COMMON_NAME) is None


@pytest.mark.parametrize("foreign", ["another CA", "garbage key"])
def test_a_client_certificate_the_client_ca_did_not_issue_is_reissued(
        cluster: Any, namespace: str, foreign: str) -> None:
    cas = ensure(cluster, namespace)
    path = f"/api/v1/namespaces/{namespace}/secrets/{upload.PROXY_CLIENT_CERT_SECRET}"
    other = certs.issue(certs.new_ca("someone else's CA"), upload.CLIENT_COMMON_NAME,
                        client=True)
    data = ({"tls.crt": base64.b64encode(other.cert_pem).decode(),
             "tls.key": base64.b64encode(other.key_pem).decode()} if foreign == "another CA"
            else {"tls.crt": base64.b64encode(other.cert_pem).decode(),
                  "tls.key": base64.b64encode(b"not a key").decode()})
    cluster.api().merge_patch(path, {"data": data})
    broken = client_secret(cluster, namespace)
    if foreign == "another CA":
        assert pair(broken) == other
    else:
        assert pair(broken).key_pem == b"not a key"

    assert ensure(cluster, namespace) == cas  # the CAs themselves are never replaced
    fixed = client_secret(cluster, namespace)
    assert certs.leaf_problem(pair(fixed), cas.client_ca,
                              common_name=upload.CLIENT_COMMON_NAME) is None
    assert fixed["type"] == "kubernetes.io/tls"

"""UploadTokenRequest end to end: kubectl -> kube-apiserver -> aggregation -> cdi-apiserver,
with the real RBAC, SubjectAccessReviews and front-proxy certificate."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from apiserver import group, tls
from cdicontract import uploadtoken
from tests.apiserver.e2e.conftest import APISERVICE_PATH, NS, PUBLIC_PATH, SECRET_PATH, TokenApi
from tests.cluster.helpers import wait_for

pytestmark = pytest.mark.cluster
COLLECTION = f"{group.VERSION_PATH}/namespaces/{{ns}}/{group.RESOURCE}"


def token_of(out: Any) -> str:
    return json.loads(out.stdout)["status"]["token"]  # type: ignore[no-any-return]


def test_an_admin_gets_a_token_that_verifies_with_the_published_key(token_api: TokenApi,
                                                                    namespace: str):
    out = token_api.create(namespace, "disk-1")
    doc = json.loads(out.stdout)
    assert doc["kind"] == "UploadTokenRequest" and doc["spec"] == {"pvcName": "disk-1"}
    claims = uploadtoken.verify(doc["status"]["token"], token_api.public_key())
    assert (claims.namespace, claims.name) == (namespace, "disk-1")


def test_the_configmap_holds_the_public_half_of_the_secret(token_api: TokenApi):
    secret = token_api.api.get(SECRET_PATH)
    private = serialization.load_pem_private_key(
        base64.b64decode(secret["data"]["id_rsa"]), None)
    derived = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert token_api.public_key() == derived
    assert base64.b64decode(secret["data"]["id_rsa.pub"]) == derived
    assert "PRIVATE" not in json.dumps(token_api.api.get(PUBLIC_PATH))


def test_the_apiservice_trusts_the_generated_ca(token_api: TokenApi):
    bundle = token_api.api.get(APISERVICE_PATH)["spec"]["caBundle"]
    secret = token_api.api.get(f"/api/v1/namespaces/{NS}/secrets/{tls.SECRET_NAME}")
    assert bundle == secret["data"]["ca.crt"]


def test_discovery_and_explain_work_through_the_aggregator(token_api: TokenApi):
    out = token_api.cluster.kubectl("api-resources", f"--api-group={group.GROUP}", "-o", "wide")
    assert "uploadtokenrequests" in out.stdout and "utr" in out.stdout
    assert "create" in out.stdout
    explain = token_api.cluster.kubectl("explain", "utr.spec.pvcName")
    assert "PvcName is the name of the PVC" in explain.stdout


def test_a_user_without_rbac_is_forbidden_and_edit_in_the_namespace_allows(
        token_api: TokenApi, namespace: str):
    out = token_api.create(namespace, "disk", "--as=bob", "--validate=false", check=False)
    assert out.returncode != 0
    assert "Forbidden" in out.stderr or "forbidden" in out.stderr, out.stderr
    assert 'User "bob" cannot create resource "uploadtokenrequests"' in out.stderr
    # The built-in `edit` role carries the aggregated rule, as with CDI.
    token_api.cluster.kubectl("-n", namespace, "create", "rolebinding", "bob-edit",
                              "--clusterrole=edit", "--user=bob")

    def allowed() -> Any:
        r = token_api.create(namespace, "disk", "--as=bob", "--validate=false", check=False)
        return r if r.returncode == 0 else None

    out = wait_for("bob allowed through the edit role", allowed, timeout=30)
    assert uploadtoken.verify(token_of(out), token_api.public_key()).name == "disk"


def test_the_server_asks_the_cluster_itself_for_the_forwarded_user(token_api: TokenApi,
                                                                  namespace: str):
    # Straight at the pod with the kube-apiserver's own front-proxy certificate: the
    # kube-apiserver's authorization is bypassed, so the 403 is this server's review.
    s, base = token_api.direct(token_api.front_proxy_cert)
    url = base + COLLECTION.format(ns=namespace)
    body = {"spec": {"pvcName": "disk"}}
    r = s.post(url, json=body, headers={"X-Remote-User": "mallory"})
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "Forbidden"
    assert 'User "mallory" cannot create' in r.json()["message"]
    r = s.post(url, json=body, headers={"X-Remote-User": "root-ish",
                                        "X-Remote-Group": "system:masters"})
    assert r.status_code == 201, r.text
    claims = uploadtoken.verify(r.json()["status"]["token"], token_api.public_key())
    assert claims.namespace == namespace


def test_without_the_front_proxy_certificate_the_pod_answers_401(token_api: TokenApi,
                                                                namespace: str):
    s, base = token_api.direct(None)
    r = s.post(base + COLLECTION.format(ns=namespace), json={"spec": {"pvcName": "disk"}},
               headers={"X-Remote-User": "cdi-py-admin", "X-Remote-Group": "system:masters"})
    assert r.status_code == 401, r.text
    assert (r.json()["kind"], r.json()["reason"]) == ("Status", "Unauthorized")
    # The admin's client certificate (the cluster CA's, not the front proxy's) is
    # refused in the handshake.
    pki = token_api.cluster.root / "pki"
    s.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        s.post(base + COLLECTION.format(ns=namespace), json={"spec": {"pvcName": "d"}},
               headers={"X-Remote-User": "cdi-py-admin"})


def test_the_key_survives_a_pod_restart(token_api: TokenApi, namespace: str):
    before_secret = token_api.api.get(SECRET_PATH)["data"]
    before_public = token_api.public_key()
    old_token = token_of(token_api.create(namespace, "disk"))
    old_pod = token_api.ready_pod()["metadata"]["name"]
    token_api.cluster.kubectl("-n", NS, "delete", "pod", old_pod, "--wait=true")

    def replaced() -> dict[str, Any] | None:
        pod = token_api.ready_pod()
        return pod if pod["metadata"]["name"] != old_pod else None

    wait_for("a new cdi-apiserver pod", replaced, timeout=90)

    def new_token() -> str | None:
        r = token_api.create(namespace, "disk-2", check=False)
        return token_of(r) if r.returncode == 0 else None

    token = wait_for("a token from the new pod", new_token, timeout=60)
    assert token_api.api.get(SECRET_PATH)["data"] == before_secret
    assert token_api.public_key() == before_public
    assert uploadtoken.verify(old_token, before_public).name == "disk"
    assert uploadtoken.verify(token, before_public).name == "disk-2"


def test_kubectl_shows_the_servers_errors_and_dry_run_issues_no_token(token_api: TokenApi,
                                                                      namespace: str):
    out = token_api.create(namespace, "Not_A_Name", check=False)
    assert out.returncode != 0
    assert 'spec.pvcName: Invalid value: "Not_A_Name"' in out.stderr, out.stderr
    out = token_api.cluster.kubectl("-n", namespace, "get", "utr", check=False)
    assert out.returncode != 0
    assert "does not allow this method" in out.stderr, out.stderr
    out = token_api.create(namespace, "disk", "--dry-run=server")
    assert json.loads(out.stdout)["status"] == {}

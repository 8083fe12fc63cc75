"""`cdi-apiserver` installed from deploy/ on the local control plane, reached through the
real kube-apiserver (aggregation) and, for the tests that must bypass it, directly at its
pod with or without the kube-apiserver's front-proxy client certificate."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from apiserver import group, tls
from cdicontract import upload
from tests.apiserver.conftest import SERVICE_HOST, _PinnedHost
from tests.cluster.helpers import wait_for

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ("namespace.yaml", "apiserver.yaml", "rbac-aggregated.yaml")
NS = "cdi"
SECRET_PATH = f"/api/v1/namespaces/{NS}/secrets/{upload.SIGNING_KEY_SECRET}"
PUBLIC_PATH = f"/api/v1/namespaces/{NS}/configmaps/{upload.PUBLIC_KEY_CONFIGMAP}"
APISERVICE_PATH = f"/apis/apiregistration.k8s.io/v1/apiservices/{group.APISERVICE}"


def utr_yaml(namespace: str, pvc: str, name: str = "token-for-dv") -> str:
    return json.dumps({"apiVersion": group.GROUP_VERSION, "kind": group.KIND,
                       "metadata": {"name": name, "namespace": namespace},
                       "spec": {"pvcName": pvc}})


@dataclass(frozen=True)
class TokenApi:
    cluster: Any

    @property
    def api(self) -> Any:
        return self.cluster.api()

    def public_key(self) -> bytes:
        return self.api.get(PUBLIC_PATH)["data"]["id_rsa.pub"].encode()  # type: ignore[no-any-return]

    def create(self, namespace: str, pvc: str, *extra: str, check: bool = True) -> Any:
        return self.cluster.kubectl("create", "-f", "-", "-o", "json", *extra,
                                    input=utr_yaml(namespace, pvc), check=check)

    def pods(self) -> list[dict[str, Any]]:
        items = self.api.get(f"/api/v1/namespaces/{NS}/pods",
                             labelSelector="cdi.kubevirt.io=cdi-apiserver")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pod(self) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            for p in self.pods():
                conds = p.get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    return p
            return None
        return wait_for("a ready cdi-apiserver pod", ready, timeout=60)

    def direct(self, cert: tuple[str, str] | None) -> tuple[requests.Session, str]:
        """A session to the pod itself, verifying its serving certificate."""
        secret = self.api.get(f"/api/v1/namespaces/{NS}/secrets/{tls.SECRET_NAME}")
        ca = self.cluster.root / "apiserver-serving-ca.crt"
        ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
        s = requests.Session()
        s.trust_env = False
        s.mount("https://", _PinnedHost())
        s.verify = str(ca)
        s.cert = cert
        ip = self.ready_pod()["status"]["podIP"]
        return s, f"https://{ip}:8443"

    @property
    def front_proxy_cert(self) -> tuple[str, str]:
        pki = self.cluster.root / "pki"
        return str(pki / "front-proxy-client.crt"), str(pki / "front-proxy-client.key")


def apiservice_available(api: Any) -> bool:
    svc = api.get_or_none(APISERVICE_PATH) or {}
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in svc.get("status", {}).get("conditions", []))


@pytest.fixture(scope="session")
def token_api(cluster: Any) -> Iterator[TokenApi]:
    args = [a for m in MANIFESTS for a in ("-f", str(ROOT / "deploy" / m))]
    cluster.kubectl("apply", *args)
    api = cluster.api()
    wait_for(f"APIService {group.APISERVICE} Available", lambda: apiservice_available(api),
             timeout=90)
    assert SERVICE_HOST.startswith(tls.SERVICE_NAME + ".")
    yield TokenApi(cluster)

"""The upload path's certificate authorities, kept in the controller's namespace.

Two CAs: one signs every upload server's serving certificate (the proxy trusts it through
the ConfigMap `SERVER_CA_BUNDLE_CONFIGMAP`), the other signs the proxy's client
certificate (`PROXY_CLIENT_CERT_SECRET`, CN `CLIENT_COMMON_NAME`), which each upload
server requires. Created on start when missing; a 409 means another replica won the
race, and its objects are used. A client certificate the client CA did not issue (left by
an earlier install, or the CA Secret was replaced), or one expired, is re-issued: upload
servers would refuse every upload through the proxy otherwise. Only the controller
reads the CA keys.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import upload
from controller import certs
from controller.runtime import kube
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

SERVER_CA_NAME = "cdi-uploadserver-ca"
CLIENT_CA_NAME = "cdi-uploadserver-client-ca"
BUNDLE_KEY = "ca-bundle.crt"


@dataclass(frozen=True)
class Authority:
    server_ca: certs.KeyPair
    client_ca: certs.KeyPair


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_secret(name: str, namespace: str, pair: certs.KeyPair,
               ca_pem: bytes | None = None, labels: dict[str, str] | None = None) -> Obj:
    data = {"tls.crt": _b64(pair.cert_pem), "tls.key": _b64(pair.key_pem)}
    if ca_pem is not None:
        data["ca.crt"] = _b64(ca_pem)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {ann.LABEL_APP: ann.LABEL_APP_VALUE, **(labels or {})}},
            "data": data}


def _pair(secret: Obj) -> certs.KeyPair:
    data = secret.get("data") or {}
    return certs.KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))


async def _ensure_secret(client: kube.Kube, namespace: str, name: str,
                         make: Callable[[], certs.KeyPair]) -> certs.KeyPair:
    path = kube.SECRETS.path(namespace, name)
    secret = await client.get(path)
    if secret is None:
        try:
            secret = await client.create(kube.SECRETS.path(namespace),
                                         tls_secret(name, namespace, make()))
            log.info("created secret ns=%s secret=%s", namespace, name)
        except kube.Conflict:
            secret = await client.get(path)
            if secret is None:
                raise
    return _pair(secret)


def _proxy_client_cert(client_ca: certs.KeyPair) -> certs.KeyPair:
    return certs.issue(client_ca, upload.CLIENT_COMMON_NAME, client=True)


def _pair_or_none(secret: Obj) -> certs.KeyPair | None:
    try:
        return _pair(secret)
    except (KeyError, TypeError, ValueError):
        return None


async def _ensure_client_cert(client: kube.Kube, namespace: str,
                              client_ca: certs.KeyPair) -> None:
    """The proxy's client certificate, issued by `client_ca`: created when missing,
    re-issued in place when the one found is not usable with that CA."""
    name = upload.PROXY_CLIENT_CERT_SECRET
    path = kube.SECRETS.path(namespace, name)
    secret = await client.get(path)
    if secret is None:
        await _ensure_secret(client, namespace, name, lambda: _proxy_client_cert(client_ca))
        return
    found = _pair_or_none(secret)
    problem = ("it holds no tls.crt and tls.key" if found is None else
               certs.leaf_problem(found, client_ca, common_name=upload.CLIENT_COMMON_NAME))
    if problem is None:
        return
    fresh = _proxy_client_cert(client_ca)
    await client.merge_patch(path, {"data": tls_secret(name, namespace, fresh)["data"]})
    log.info("reissued secret ns=%s secret=%s reason=%s", namespace, name, problem)


async def ensure(client: kube.Kube, namespace: str) -> Authority:
    """Load the CAs, creating them (and the proxy's client certificate) when missing."""
    server_ca = await _ensure_secret(client, namespace, upload.SERVER_CA_SECRET,
                                     lambda: certs.new_ca(SERVER_CA_NAME))
    client_ca = await _ensure_secret(client, namespace, upload.CLIENT_CA_SECRET,
                                     lambda: certs.new_ca(CLIENT_CA_NAME))
    await _ensure_client_cert(client, namespace, client_ca)
    bundle = server_ca.cert_pem.decode()
    path = kube.CONFIGMAPS.path(namespace, upload.SERVER_CA_BUNDLE_CONFIGMAP)
    current = await client.get(path)
    if current is None:
        try:
            await client.create(kube.CONFIGMAPS.path(namespace), {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": upload.SERVER_CA_BUNDLE_CONFIGMAP, "namespace": namespace,
                             "labels": {ann.LABEL_APP: ann.LABEL_APP_VALUE}},
                "data": {BUNDLE_KEY: bundle}})
        except kube.Conflict:
            current = await client.get(path)
    if current is not None and (current.get("data") or {}).get(BUNDLE_KEY) != bundle:
        await client.merge_patch(path, {"data": {BUNDLE_KEY: bundle}})
    return Authority(server_ca, client_ca)

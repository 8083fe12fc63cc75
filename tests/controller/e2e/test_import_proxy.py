"""CDIConfig importProxy on the real control plane: proxy URLs with credentials reach the
importer only through a Secret, and trustedCAProxy's ConfigMap is copied beside the pod
and mounted at /proxycerts, as CDI does. (The importer's use of both, through a real
squid, is tested in tests/importer/e2e/test_import_through_a_trusted_proxy.py.)"""

from __future__ import annotations

import base64
import json

import pytest

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster]
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"
PASSWORD = "s3cret-proxy-pw"  # a test credential
PROXY = f"http://alice:{PASSWORD}@proxy.invalid:3128"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def test_proxy_credentials_come_from_a_secret_and_the_proxy_ca_is_mounted(cdi, namespace,
                                                                          images):
    api = cdi.api
    api.create("/api/v1/namespaces/cdi/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-proxy-ca"},
        "data": {"ca.pem": CA_PEM}})
    api.merge_patch(CONFIG, {"spec": {"importProxy": {
        "HTTPProxy": PROXY, "HTTPSProxy": PROXY, "noProxy": "",
        "trustedCAProxy": "test-proxy-ca"}}})
    try:
        wait_for("config seen", lambda: (api.get(CONFIG).get("status", {}).get(
            "importProxy") or {}).get("trustedCAProxy") == "test-proxy-ca", timeout=30)
        cdi.create_dv(namespace, dv_manifest("proxied", {"http": {"url": images.url(
            "disk.raw")}}, size="32Mi"))
        pod = wait_for("importer pod", lambda: api.get_or_none(
            f"/api/v1/namespaces/{namespace}/pods/importer-proxied"), timeout=60)
        assert PASSWORD not in json.dumps(pod)
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        for name in ("http_proxy", "HTTPS_PROXY"):
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "importer-proxied-proxy"
        secret = api.get(f"/api/v1/namespaces/{namespace}/secrets/importer-proxied-proxy")
        assert base64.b64decode(secret["data"]["HTTP_PROXY"]).decode() == PROXY
        copy = api.get(f"/api/v1/namespaces/{namespace}/configmaps/"
                       "import-proxy-cm-proxied")
        assert copy["data"] == {"ca.pem": CA_PEM}
        vols = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert vols["cdi-proxy-cert-vol"]["configMap"]["name"] == "import-proxy-cm-proxied"
        assert env["IMPORTER_PROXY_CERT_DIR"]["value"] == "/proxycerts"
        assert PASSWORD not in cdi.controller_log()
    finally:
        api.merge_patch(CONFIG, {"spec": {"importProxy": None}})
        api.delete("/api/v1/namespaces/cdi/configmaps/test-proxy-ca")

"""The controller's side of uploads on the real control plane.

A DataVolume with `source.upload` (or a bare PVC annotated as an upload target) gets its
upload server: pod, Service and TLS Secret, labelled with the owner labels, owned by the
PVC, mounting the volume as the importer does; the PVC carries the annotations the proxy
reads; the DataVolume goes UploadScheduled, and UploadReady once the server answers its
readiness probe (that half needs `cdi-uploadserver`, written on another branch: until it
is installed, the test checks that the PVC says not-ready instead). CDIConfig publishes
the proxy's URL. Deleting the DataVolume removes everything.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.cluster.helpers import pod as plain_pod
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
P = "cdi.kubevirt.io/"
CONFIG = "/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config"


def get(cdi: Any, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    return cdi.api.get_or_none(f"/api/v1/namespaces/{ns}/{kind}/{name}")  # type: ignore[no-any-return]


def wait_pvc(cdi: Any, ns: str, name: str, check: Any, what: str,
             timeout: float = 60) -> dict[str, Any]:
    return wait_for(what, lambda: (
        p if (p := get(cdi, ns, "persistentvolumeclaims", name)) and check(
            p["metadata"].get("annotations", {})) else None), timeout=timeout)


def secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def assert_upload_objects(cdi: Any, ns: str, pvc_name: str, owner_uid: str,
                          block: bool = False) -> None:
    name = f"cdi-upload-{pvc_name}"
    pvc = get(cdi, ns, "persistentvolumeclaims", pvc_name)
    assert pvc is not None
    pod = wait_for("upload pod", lambda: get(cdi, ns, "pods", name), timeout=30)
    svc = wait_for("upload service", lambda: get(cdi, ns, "services", name), timeout=30)
    secret = wait_for("upload secret", lambda: get(cdi, ns, "secrets", name), timeout=30)
    for obj in (pod, svc, secret):
        labels = obj["metadata"]["labels"]
        assert labels[P + "owner-uid"] == owner_uid
        assert labels[P + "transfer"] == "upload"
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"]) == ("PersistentVolumeClaim", pvc["metadata"]["uid"])
    spec = pod["spec"]
    assert spec["restartPolicy"] == "OnFailure"
    c = spec["containers"][0]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["UPLOADSERVER_DEST"] == ("/dev/cdi-block-volume" if block else "/data/disk.img")
    assert env["OWNER_UID"] == pvc["metadata"]["uid"]
    assert env["UPLOADSERVER_TLS_DIR"] == "/etc/cdi-uploadserver/tls"
    if block:
        assert c["volumeDevices"][0]["devicePath"] == "/dev/cdi-block-volume"
    else:
        assert {m["mountPath"] for m in c["volumeMounts"]} == {
            "/data", "/etc/cdi-uploadserver/tls", "/tmp"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    port = svc["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (443, 8443)
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # The serving certificate names the Service and chains to the server CA; the client
    # CA is the one the proxy's client certificate was issued by.
    data = secret_data(secret)
    server_ca = secret_data(cdi.api.get("/api/v1/namespaces/cdi/secrets/cdi-uploadserver-ca"))
    client_ca = secret_data(cdi.api.get(
        "/api/v1/namespaces/cdi/secrets/cdi-uploadserver-client-ca"))
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(server_ca["tls.crt"]))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{name}.{ns}.svc" in sans.get_values_for_type(x509.DNSName)
    assert data["ca.crt"] == client_ca["tls.crt"]


def assert_gone(cdi: Any, ns: str, name: str) -> None:
    wait_for("upload objects gone", lambda: all(
        get(cdi, ns, kind, name) is None for kind in ("pods", "services", "secrets")),
        timeout=60)


def test_upload_datavolume_gets_its_server_and_deleting_it_cleans_up(cdi, namespace):
    name = f"up-{uuid.uuid4().hex[:6]}"
    dv = cdi.create_dv(namespace, dv_manifest(name, {"upload": {}}, size="64Mi"))
    cdi.wait_phase(namespace, name, "UploadScheduled", "UploadReady", timeout=60)
    assert_upload_objects(cdi, namespace, name, dv["metadata"]["uid"])
    a = wait_pvc(cdi, namespace, name, lambda a: P + "storage.pod.phase" in a,
                 "pod phase recorded")["metadata"]["annotations"]
    assert a[P + "storage.uploadPodName"] == f"cdi-upload-{name}"
    assert a[P + "storage.upload.target"] == ""
    assert P + "storage.condition.running" in a
    assert "UploadScheduled" in {e["reason"] for e in cdi.events(namespace, name)}
    cdi.api.delete(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{namespace}/datavolumes/{name}")
    assert_gone(cdi, namespace, f"cdi-upload-{name}")


def test_block_upload_gets_the_device(cdi, namespace):
    name = f"upb-{uuid.uuid4().hex[:6]}"
    dv = cdi.create_dv(namespace, dv_manifest(name, {"upload": {}}, size="64Mi",
                                              mode="Block"))
    cdi.wait_phase(namespace, name, "UploadScheduled", "UploadReady", timeout=60)
    assert_upload_objects(cdi, namespace, name, dv["metadata"]["uid"], block=True)


def test_ready_follows_the_upload_server(cdi, namespace):
    name = f"upr-{uuid.uuid4().hex[:6]}"
    cdi.create_dv(namespace, dv_manifest(name, {"upload": {}}, size="64Mi"))
    # The node runs the uploadserver image built from the Dockerfile.
    cdi.wait_phase(namespace, name, "UploadReady", timeout=90)
    a = wait_pvc(cdi, namespace, name,
                 lambda a: a.get(P + "storage.pod.ready") == "true", "pod ready")
    assert a["metadata"]["annotations"][P + "storage.pod.phase"] == "Running"
    assert "UploadReady" in {e["reason"] for e in cdi.events(namespace, name)}


def test_legacy_annotated_pvc_gets_an_upload_server(cdi, namespace):
    name = f"legacy-{uuid.uuid4().hex[:6]}"
    pvc = cdi.api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": {P + "storage.upload.target": ""}},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "64Mi"}}}})
    wait_pvc(cdi, namespace, name, lambda a: a.get(P + "storage.uploadPodName"),
             "upload pod name recorded")
    assert_upload_objects(cdi, namespace, name, pvc["metadata"]["uid"])
    cdi.api.delete(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
    assert_gone(cdi, namespace, f"cdi-upload-{name}")


def test_no_upload_server_while_another_pod_uses_the_volume(cdi, namespace):
    name = f"inuse-{uuid.uuid4().hex[:6]}"
    pvcs = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    cdi.api.create(pvcs, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "64Mi"}}}})
    user = plain_pod("user", "sleep 600", volumes=[{
        "name": "d", "persistentVolumeClaim": {"claimName": name}}],
        container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]})
    cdi.api.create(f"/api/v1/namespaces/{namespace}/pods", user)
    wait_for("user pod running", lambda: (get(cdi, namespace, "pods", "user") or {}).get(
        "status", {}).get("phase") == "Running", timeout=60)
    cdi.api.merge_patch(f"{pvcs}/{name}", {"metadata": {"annotations": {
        P + "storage.upload.target": ""}}})
    a = wait_pvc(cdi, namespace, name, lambda a: a.get(P + "storage.condition.running.reason")
                 == "UploadTargetInUse", "in-use recorded")["metadata"]["annotations"]
    assert f"{namespace}/user" in a[P + "storage.condition.running.message"]
    assert get(cdi, namespace, "pods", f"cdi-upload-{name}") is None
    cdi.api.delete(f"/api/v1/namespaces/{namespace}/pods/user")
    wait_for("upload pod once the user is gone",
             lambda: get(cdi, namespace, "pods", f"cdi-upload-{name}"), timeout=60)


def test_upload_authority_is_in_the_controllers_namespace(cdi):
    api = cdi.api
    client_ca = secret_data(api.get("/api/v1/namespaces/cdi/secrets/cdi-uploadserver-client-ca"))
    proxy = secret_data(api.get("/api/v1/namespaces/cdi/secrets/cdi-uploadproxy-client-cert"))
    cert = x509.load_pem_x509_certificate(proxy["tls.crt"])
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(client_ca["tls.crt"]))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "client.upload-server.cdi.kubevirt.io"
    server_ca = secret_data(api.get("/api/v1/namespaces/cdi/secrets/cdi-uploadserver-ca"))
    bundle = api.get("/api/v1/namespaces/cdi/configmaps/cdi-uploadserver-ca-bundle")
    assert bundle["data"]["ca-bundle.crt"].encode() == server_ca["tls.crt"]


def proxy_url(cdi: Any) -> str | None:
    return cdi.api.get(CONFIG).get("status", {}).get("uploadProxyURL")  # type: ignore[no-any-return]


def test_upload_proxy_url_from_nodeport_service_and_override(cdi, cluster):
    api = cdi.api
    path = "/api/v1/namespaces/cdi/services"
    made = api.get_or_none(f"{path}/cdi-uploadproxy") is None
    if made:
        api.create(path, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "cdi-uploadproxy", "namespace": "cdi"},
            "spec": {"type": "NodePort", "selector": {"cdi.kubevirt.io": "cdi-uploadproxy"},
                     "ports": [{"port": 443, "targetPort": 8443}]}})
    try:
        svc = api.get(f"{path}/cdi-uploadproxy")
        node = api.get("/api/v1/nodes")["items"][0]
        ip = next(a["address"] for a in node["status"]["addresses"]
                  if a["type"] == "InternalIP")
        if svc["spec"]["type"] == "NodePort":
            expected = f"https://{ip}:{svc['spec']['ports'][0]['nodePort']}"
        else:
            expected = "https://cdi-uploadproxy.cdi.svc"
        wait_for("proxy URL from the Service", lambda: proxy_url(cdi) == expected, timeout=30)
        api.merge_patch(CONFIG, {"spec": {"uploadProxyURLOverride": "https://up.example:8443"}})
        wait_for("proxy URL from the override",
                 lambda: proxy_url(cdi) == "https://up.example:8443", timeout=30)
        api.merge_patch(CONFIG, {"spec": {"uploadProxyURLOverride": None}})
        wait_for("proxy URL from the Service again", lambda: proxy_url(cdi) == expected,
                 timeout=30)
    finally:
        api.merge_patch(CONFIG, {"spec": {"uploadProxyURLOverride": None}})
        if made:
            api.delete(f"{path}/cdi-uploadproxy")
    if made:
        wait_for("no proxy URL without a proxy", lambda: not proxy_url(cdi), timeout=30)

"""The upload server's pod, Service and Secret, as built from a PVC."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from cdicontract import upload
from controller import certs
from controller.cdiconfig import EffectiveConfig
from controller.transfers.upload import objects
from controller.transfers.upload.authority import Authority
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
TARGET = {P + "storage.upload.target": "", P + "storage.contentType": "kubevirt"}


def dv_pvc(mode="Filesystem", content="kubevirt"):
    pvc = f.pvc(annotations={**TARGET, P + "storage.contentType": content}, mode=mode)
    pvc["metadata"]["ownerReferences"] = [{"apiVersion": "cdi.kubevirt.io/v1beta1",
                                           "kind": "DataVolume", "name": "dv1",
                                           "uid": "dv-uid", "controller": True}]
    return pvc


def env_of(pod):
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def build(mode="Filesystem", content="kubevirt", config=None):
    return objects.pod(dv_pvc(mode, content), config or EffectiveConfig(),
                       objects.PodSettings("cdi-py/uploadserver:t", "Never"))


def test_pod_is_named_labelled_and_owned_like_cdis():
    pod = build()
    meta = pod["metadata"]
    assert meta["name"] == "cdi-upload-dv1" and meta["namespace"] == "ns"
    assert meta["labels"][P + "owner-uid"] == "dv-uid"
    assert meta["labels"][P + "transfer"] == "upload"
    assert meta["labels"]["app"] == "containerized-data-importer"
    assert meta["ownerReferences"][0]["kind"] == "PersistentVolumeClaim"
    assert meta["ownerReferences"][0]["uid"] == "pvc-uid"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "OnFailure"
    c = spec["containers"][0]
    assert c["image"] == "cdi-py/uploadserver:t" and c["imagePullPolicy"] == "Never"
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["runAsNonRoot"] and not c["securityContext"][
        "allowPrivilegeEscalation"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8443,
                                              "scheme": "HTTPS"}
    assert {p["containerPort"] for p in c["ports"]} == {8443,
                                                         upload.UPLOAD_SERVER_METRICS_PORT}


def test_filesystem_target_is_mounted_at_data_with_tls_beside_it():
    pod = build()
    c = pod["spec"]["containers"][0]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", upload.TLS_DIR, "/tmp"}
    assert "volumeDevices" not in c
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    tls = next(v for v in vols.values() if "secret" in v)
    assert tls["secret"]["secretName"] == "cdi-upload-dv1"
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "dv1"
               for v in vols.values())
    env = env_of(pod)
    assert env[upload.ENV_DEST] == "/data/disk.img"
    assert env[upload.ENV_FILESYSTEM_OVERHEAD] == "0.06"


def test_block_target_is_a_device_without_overhead():
    pod = build(mode="Block")
    c = pod["spec"]["containers"][0]
    assert c["volumeDevices"][0]["devicePath"] == "/dev/cdi-block-volume"
    assert {m["mountPath"] for m in c["volumeMounts"]} == {upload.TLS_DIR, "/tmp"}
    env = env_of(pod)
    assert env[upload.ENV_DEST] == "/dev/cdi-block-volume"
    assert env[upload.ENV_FILESYSTEM_OVERHEAD] == "0"


def test_archive_uploads_extract_into_the_mount():
    assert env_of(build(content="archive"))[upload.ENV_DEST] == "/data"


def test_env_carries_every_contract_name():
    env = env_of(build(config=EffectiveConfig(preallocation=True)))
    assert env == {
        upload.ENV_TLS_DIR: upload.TLS_DIR,
        upload.ENV_CLIENT_NAME: upload.CLIENT_COMMON_NAME,
        upload.ENV_DEST: "/data/disk.img",
        upload.ENV_CONTENT_TYPE: "kubevirt",
        upload.ENV_IMAGE_SIZE: "1Gi",
        upload.ENV_FILESYSTEM_OVERHEAD: "0.06",
        upload.ENV_PREALLOCATION: "true",
        upload.ENV_OWNER_UID: "pvc-uid",
        upload.ENV_TERMINATION_LOG: "/dev/termination-log",
    }


def test_service_maps_443_to_the_server_and_selects_only_this_pod():
    pvc = dv_pvc()
    svc = objects.service(pvc)
    assert svc["metadata"]["name"] == upload.upload_service_name("dv1")
    assert svc["spec"]["ports"][0]["port"] == 443
    assert svc["spec"]["ports"][0]["targetPort"] == 8443
    pod_labels = build()["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["selector"][P + "owner-uid"] == "dv-uid"


@pytest.fixture(scope="module")
def authority():
    return Authority(certs.new_ca("server-ca"), certs.new_ca("client-ca"))


def test_secret_holds_a_serving_cert_for_the_service_and_the_client_ca(authority):
    secret = objects.secret(dv_pvc(), authority)
    assert secret["metadata"]["name"] == "cdi-upload-dv1"
    assert secret["metadata"]["labels"][P + "owner-uid"] == "dv-uid"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data["ca.crt"] == authority.client_ca.cert_pem
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    server_ca = x509.load_pem_x509_certificate(authority.server_ca.cert_pem)
    leaf.verify_directly_issued_by(server_ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "cdi-upload-dv1.ns.svc" in sans.get_values_for_type(x509.DNSName)
    assert b"PRIVATE KEY" in data["tls.key"]


def test_proxy_client_certificate_carries_the_expected_name(authority):
    pair = certs.issue(authority.client_ca, upload.CLIENT_COMMON_NAME, client=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(authority.client_ca.cert_pem))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == upload.CLIENT_COMMON_NAME

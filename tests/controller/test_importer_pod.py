import json

from cdicontract import envvars
from controller.cdiconfig import EffectiveConfig, effective
from controller.transfers.importing import pod as importpod
from controller.transfers.importing import proxysecret
from controller.transfers.importing.source import ImportRequest, SourceKind
from tests.controller import factories as f

SETTINGS = importpod.PodSettings(image="cdi-py/importer:latest")


def env_of(pod):
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_filesystem_import_pod_has_cdis_name_owner_env_and_limits():
    pvc = f.pvc(size="1090Mi")
    req = ImportRequest(SourceKind.HTTP, "https://h/a.qcow2", checksum="md5:" + "a" * 32)
    pod = importpod.build(pvc, req, EffectiveConfig(), SETTINGS)
    assert pod["metadata"]["name"] == "importer-dv1"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    c = pod["spec"]["containers"][0]
    assert c["volumeMounts"] == [{"name": "cdi-data-vol", "mountPath": "/data"},
                                 {"name": "cdi-tmp", "mountPath": "/tmp"}]
    assert "volumeDevices" not in c
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["resources"]["limits"] == {"cpu": "750m", "memory": "600M"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8443, "protocol": "TCP"}]
    env = {k: v.get("value") for k, v in env_of(pod).items()}
    assert env[envvars.SOURCE] == "http"
    assert env[envvars.ENDPOINT] == "https://h/a.qcow2"
    assert env[envvars.IMAGE_SIZE] == "1090Mi"
    assert env[envvars.OWNER_UID] == "pvc-uid"
    assert env[envvars.FILESYSTEM_OVERHEAD] == "0.06"
    assert env[envvars.CHECKSUM] == "md5:" + "a" * 32


def test_block_import_pod_uses_a_device_and_no_overhead():
    pod = importpod.build(f.pvc(mode="Block"), ImportRequest(SourceKind.NONE, ""),
                          EffectiveConfig(), SETTINGS)
    c = pod["spec"]["containers"][0]
    assert c["volumeDevices"] == [{"name": "cdi-data-vol", "devicePath": "/dev/cdi-block-volume"}]
    assert c["volumeMounts"] == [{"name": "cdi-tmp", "mountPath": "/tmp"}]
    env = {k: v.get("value") for k, v in env_of(pod).items()}
    assert env[envvars.SOURCE] == "blank"
    assert env[envvars.FILESYSTEM_OVERHEAD] == "0"


def test_credentials_come_only_from_secret_key_refs():
    req = ImportRequest(SourceKind.HTTP, "http://h/x", secret="creds", cert_configmap="ca",
                        extra_headers=("X-A: 1", "X-B: 2"), secret_extra_headers=("hdrs",))
    pod = importpod.build(f.pvc(), req, EffectiveConfig(), SETTINGS)
    env = env_of(pod)
    assert env[envvars.ACCESS_KEY_ID]["valueFrom"] == {
        "secretKeyRef": {"name": "creds", "key": "accessKeyId"}}
    assert env[envvars.SECRET_KEY]["valueFrom"] == {
        "secretKeyRef": {"name": "creds", "key": "secretKey"}}
    assert env[envvars.CERT_DIR]["value"] == "/certs"
    assert env["IMPORTER_EXTRA_HEADER_0"]["value"] == "X-A: 1"
    assert env["IMPORTER_EXTRA_HEADER_1"]["value"] == "X-B: 2"
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["cdi-cert-vol"] == {"name": "cdi-cert-vol", "configMap": {"name": "ca"}}
    assert vols["cdi-secret-extra-headers-vol-0"]["secret"] == {"secretName": "hdrs"}
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["cdi-cert-vol"] == "/certs"


def test_gcs_key_is_cdis_secret_volume_at_google_and_never_env():
    req = ImportRequest(SourceKind.GCS, "gs://b/disk.img", secret="gcskey")
    pod = importpod.build(f.pvc(), req, EffectiveConfig(), SETTINGS)
    env = env_of(pod)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == {
        "name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/google/credentials.json"}
    assert envvars.ACCESS_KEY_ID not in env and envvars.SECRET_KEY not in env
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["cdi-secret-vol"] == {"name": "cdi-secret-vol",
                                      "secret": {"secretName": "gcskey"}}
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["cdi-secret-vol"] == {"name": "cdi-secret-vol", "readOnly": True,
                                        "mountPath": "/google"}


def test_anonymous_gcs_has_no_credentials_at_all():
    pod = importpod.build(f.pvc(), ImportRequest(SourceKind.GCS, "gs://b/d.img"),
                          EffectiveConfig(), SETTINGS)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env_of(pod)
    assert "cdi-secret-vol" not in {v["name"] for v in pod["spec"]["volumes"]}


def test_cdiconfig_proxy_resources_and_insecure_registries_reach_the_pod():
    cfg = effective({"spec": {
        "importProxy": {"HTTPProxy": "http://proxy:3128", "noProxy": "local"},
        "podResourceRequirements": {"limits": {"cpu": "2", "memory": "1Gi"}},
        "insecureRegistries": ["reg.local:5000"],
    }}, [])
    req = ImportRequest(SourceKind.REGISTRY, "docker://reg.local:5000/img:1")
    pod = importpod.build(f.pvc(), req, cfg, SETTINGS)
    refs = env_of(pod)
    for name in ("http_proxy", "HTTP_PROXY"):
        assert refs[name] == {"name": name, "valueFrom": {"secretKeyRef": {
            "name": "importer-dv1-proxy", "key": "HTTP_PROXY"}}}
    assert "https_proxy" not in refs
    env = {k: v.get("value") for k, v in refs.items()}
    assert env["no_proxy"] == "local"
    assert env[envvars.INSECURE_TLS] == "true"
    assert env[envvars.INSECURE_REGISTRIES] == "reg.local:5000"
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}}


def test_the_deny_local_addresses_gate_reaches_the_importer():
    req = ImportRequest(SourceKind.HTTP, "http://images.example/disk.qcow2")
    off = importpod.build(f.pvc(), req, effective({"spec": {}}, []), SETTINGS)
    assert envvars.DENY_LOCAL_ADDRESSES not in env_of(off)
    gated = effective({"spec": {"featureGates": ["DenyLocalImportAddresses"]}}, [])
    on = importpod.build(f.pvc(), req, gated, SETTINGS)
    assert env_of(on)[envvars.DENY_LOCAL_ADDRESSES]["value"] == "true"


def test_proxy_urls_with_credentials_go_into_a_secret_never_into_the_pod_spec():
    url = "http://alice:s3cret@proxy:3128"
    cfg = effective({"spec": {"importProxy": {"HTTPProxy": url, "HTTPSProxy": url}}}, [])
    pvc = f.pvc()
    pod = importpod.build(pvc, ImportRequest(SourceKind.HTTP, "http://h/x"), cfg, SETTINGS)
    assert "s3cret" not in json.dumps(pod)
    secret = proxysecret.build(pvc, cfg)
    assert secret is not None
    assert secret["metadata"]["name"] == "importer-dv1-proxy"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "pvc-uid"
    assert secret["stringData"] == {"HTTP_PROXY": url, "HTTPS_PROXY": url}
    assert proxysecret.build(pvc, effective({"spec": {}}, [])) is None

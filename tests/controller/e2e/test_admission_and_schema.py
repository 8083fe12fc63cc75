"""Invalid DataVolumes are refused by the real API server: schema first, then the webhook."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from cdicontract import envvars
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import ROOT, dv_manifest

pytestmark = [pytest.mark.cluster]


def apply(cdi, namespace, manifest):
    return cdi.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest),
                       check=False)


def test_unknown_field_is_rejected_by_the_schema(cdi, namespace):
    m = dv_manifest("typo", {"http": {"urll": "http://h/x"}})
    r = apply(cdi, namespace, m)
    assert r.returncode != 0
    assert "unknown field" in r.stderr and "urll" in r.stderr


def test_cdi_manifest_with_every_http_field_is_accepted_and_each_field_takes_effect(
        cdi, namespace):
    url = "https://h.example/x.img"
    m = dv_manifest("full", {"http": {
        "url": url, "secretRef": "s", "certConfigMap": "c",
        "extraHeaders": ["A: b"], "secretExtraHeaders": ["h"], "insecureSkipVerify": True,
        "checksum": "md5:" + "0" * 32}})
    m["spec"].update({"contentType": "kubevirt", "preallocation": True,
                      "priorityClassName": ""})
    r = apply(cdi, namespace, m)
    assert r.returncode == 0, r.stderr
    # Accepted is not enough: each field reaches the importer pod as CDI passes it on.
    pod = wait_for("importer pod", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/importer-full"), timeout=60)
    spec = pod["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e for e in c["env"]}

    def value(name):
        return env[name].get("value")

    assert value(envvars.ENDPOINT) == url
    assert value(envvars.SOURCE) == "http"
    assert value(envvars.CONTENT_TYPE) == "kubevirt"
    assert value(envvars.CHECKSUM) == "md5:" + "0" * 32
    assert value(envvars.INSECURE_TLS) == "true"
    assert value(envvars.PREALLOCATION) == "true"
    assert value(envvars.EXTRA_HEADER_PREFIX + "0") == "A: b"
    for var, key in ((envvars.ACCESS_KEY_ID, "accessKeyId"), (envvars.SECRET_KEY, "secretKey")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": key}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {mt["mountPath"]: mt["name"] for mt in c["volumeMounts"]}
    assert value(envvars.CERT_DIR) == envvars.DEFAULT_CERT_DIR
    assert volumes[mounts[envvars.DEFAULT_CERT_DIR]]["configMap"]["name"] == "c"
    assert [v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v] == ["h"]
    assert "priorityClassName" not in spec  # "" asks for none


@pytest.mark.parametrize(("source", "extra", "message"), [
    ({"blank": {}, "http": {"url": "http://h/x"}}, {}, "exactly one source type"),
    ({"blank": {}}, {"contentType": "archive"}, "archive is not valid with source blank"),
    ({"registry": {"url": "docker://r/i", "imageStream": "s"}}, {},
     "exactly one of url and imageStream"),
    ({"blank": {}}, {"pvc": {"resources": {"requests": {"storage": "1Gi"}}}},
     "mutually exclusive"),
], ids=["two-sources", "blank-archive", "registry-both", "pvc-and-storage"])
def test_webhook_rejects_what_the_schema_cannot_express(cdi, namespace, source, extra,
                                                        message):
    m = dv_manifest("bad", source)
    m["spec"].update(extra)
    r = apply(cdi, namespace, m)
    assert r.returncode != 0
    assert "datavolume-validate.cdi.kubevirt.io" in r.stderr and message in r.stderr


def test_spec_cannot_change_after_creation(cdi, namespace):
    cdi.create_dv(namespace, dv_manifest("imm", {"blank": {}}, size="16Mi"))
    r = cdi.kubectl("-n", namespace, "patch", "dv", "imm", "--type=merge", "-p",
                    json.dumps({"spec": {"source": {"blank": None,
                                                    "http": {"url": "http://h/x"}}}}),
                    check=False)
    assert r.returncode != 0 and "Cannot update DataVolume Spec" in r.stderr
    r = cdi.kubectl("-n", namespace, "label", "dv", "imm", "team=a", check=False)
    assert r.returncode == 0, r.stderr


def test_kubectl_explain_describes_the_fields(cdi):
    crd = yaml.safe_load((ROOT / "deploy/crds/datavolumes.yaml").read_text())
    http = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["source"]["properties"]["http"]
    out = " ".join(cdi.kubectl("explain", "dv.spec.source.http").stdout.split())
    assert " ".join(http["description"].split()) in out
    for name in http["properties"]:  # every field the schema defines is served
        assert re.search(rf"\b{name}\s+<", out), (name, out)
    assert re.search(r"\burl\s+<string> -required-", out), out
    for field in ("certConfigMap", "checksum", "secretRef"):
        explained = " ".join(cdi.kubectl("explain", f"dv.spec.source.http.{field}").stdout.split())
        assert " ".join(http["properties"][field]["description"].split()) in explained, field


def test_short_names_and_category(cdi, namespace):
    for name in ("dv", "dvs", "datavolumes", "das", "cdiconfigs", "storageprofiles"):
        assert cdi.kubectl("-n", namespace, "get", name, check=False).returncode == 0, name
    cdi.create_dv(namespace, dv_manifest("cat", {"blank": {}}, size="16Mi"))
    assert "datavolume.cdi.kubevirt.io/cat" in cdi.kubectl("-n", namespace, "get", "all").stdout


def test_every_example_manifest_is_accepted_by_the_api_server(cdi, namespace):
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert len(examples) >= 6
    for path in examples:
        if path.name.startswith("cdiconfig"):
            continue
        text = path.read_text().replace("DEMO_HTTP_HOST", "images.example.svc")
        r = cdi.kubectl("-n", namespace, "apply", "--dry-run=server", "-f", "-", input=text,
                        check=False)
        assert r.returncode == 0, (path.name, r.stderr)

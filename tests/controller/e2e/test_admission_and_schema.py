"""Invalid DataVolumes are refused by the real API server: schema first, then the webhook."""

from __future__ import annotations

import json

import pytest

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


def test_cdi_manifest_with_every_http_field_is_accepted(cdi, namespace):
    m = dv_manifest("full", {"http": {
        "url": "https://h.example/x.img", "secretRef": "s", "certConfigMap": "c",
        "extraHeaders": ["A: b"], "secretExtraHeaders": ["h"], "insecureSkipVerify": False,
        "checksum": "md5:" + "0" * 32}})
    m["spec"].update({"contentType": "kubevirt", "preallocation": False,
                      "priorityClassName": ""})
    r = cdi.kubectl("-n", namespace, "apply", "--dry-run=server", "-f", "-",
                    input=json.dumps(m), check=False)
    assert r.returncode == 0, r.stderr


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
    out = cdi.kubectl("explain", "dv.spec.source.http").stdout
    assert ("certConfigMap" in out and "basic-auth" not in out.lower()) or "secretRef" in out
    assert "checksum" in out


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

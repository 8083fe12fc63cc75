import copy

import pytest

from controller import validation
from tests.controller import factories as f

GOOD_HTTP = {"http": {"url": "https://example.org/disk.qcow2"}}


@pytest.mark.parametrize("dv", [
    f.dv(),
    f.dv(source=GOOD_HTTP),
    f.dv(source={"http": {"url": "http://h/x", "checksum": "sha256:" + "ab" * 32,
                          "extraHeaders": ["X-Token: 1"]}}),
    f.dv(source={"registry": {"url": "docker://reg:5000/img:1"}}),
    f.dv(source={"s3": {"url": "s3://bucket/key"}}),
    f.dv(source={"pvc": {"namespace": "a", "name": "b"}}, storage={}),
    f.dv(source={"upload": {}}, pvc={"resources": {"requests": {"storage": "1Gi"}}}),
    f.dv(source=None, sourceRef={"kind": "DataSource", "name": "fedora"}, storage={}),
], ids=["blank", "http", "http-full", "registry", "s3", "clone-no-size", "upload-pvc",
        "sourceRef"])
def test_accepts_valid_datavolumes(dv):
    if dv["spec"].get("sourceRef"):
        del dv["spec"]["source"]
    assert validation.validate(dv) == []


@pytest.mark.parametrize(("dv", "fragment"), [
    (f.dv(source={}), "exactly one source"),
    (f.dv(source={"blank": {}, "http": {"url": "http://h/x"}}), "got blank, http"),
    (f.dv(pvc={"resources": {"requests": {"storage": "1Gi"}}},
          storage={"resources": {"requests": {"storage": "1Gi"}}}), "mutually exclusive"),
    (f.dv(contentType="archive"), "archive is not valid with source blank"),
    (f.dv(source={"registry": {}}), "exactly one of url and imageStream"),
    (f.dv(source={"registry": {"url": "docker://r/i", "imageStream": "s"}}),
     "exactly one of url and imageStream"),
    (f.dv(source={"http": {"url": "ftp://h/x"}}), "http:// or https://"),
    (f.dv(source={"http": {"url": "http://h/x", "checksum": "crc32:00"}}), "alg one of"),
    (f.dv(source={"http": {"url": "http://h/x", "checksum": "sha256:abc"}}), "64 hex digits"),
    (f.dv(source={"http": {"url": "http://h/x", "extraHeaders": ["no colon"]}}), "Name: value"),
    (f.dv(storage={"resources": {"requests": {"storage": "100Ki"}}}), "at least 1Mi"),
    (f.dv(storage={}), "requests.storage is required"),
], ids=["no-source", "two-sources", "pvc-and-storage", "blank-archive", "registry-none",
        "registry-both", "bad-scheme", "bad-alg", "bad-digest", "bad-header", "too-small",
        "no-size"])
def test_rejects_invalid_datavolumes_with_a_message_naming_the_problem(dv, fragment):
    errors = validation.validate(dv)
    assert errors and fragment in " ".join(errors)


def test_spec_is_immutable_after_creation_but_metadata_is_not():
    old = f.dv(source=GOOD_HTTP)
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert validation.validate(relabelled, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["source"]["http"]["url"] = "https://example.org/other.img"
    assert validation.validate(changed, old) == ["Cannot update DataVolume Spec"]

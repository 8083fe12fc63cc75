"""The clone webhook's pure decisions: what is cloned, which reviews are asked in which
order, the denial, the token patch and the answer the API server gets."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from cdicontract import clone, clonetoken
from controller import cloneauth
from controller.cloneauth import BadRequest, DataSourceRef, Source, UserInfo


def apply_adds(obj: dict, patch: list[dict]) -> dict:
    """RFC 6902 `add` (the only op the webhook sends); the API server applies it for real
    in tests/controller/e2e/test_clone_authorization.py."""
    out = copy.deepcopy(obj)
    for op in patch:
        assert op["op"] == "add", op
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].split("/")[1:]]
        node = out
        for part in parents:
            node = node[part]
        node[last] = op["value"]
    return out


def dv(spec: dict, ns: str = "team", name: str = "vm-disk", annotations: dict | None = None):
    meta: dict = {"name": name, "namespace": ns}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": meta,
            "spec": spec}


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({"source": {"pvc": {"namespace": "golden", "name": "fedora"}}},
                 Source(clonetoken.KIND_PVC, "golden", "fedora"), id="pvc"),
    pytest.param({"source": {"pvc": {"name": "fedora"}}},
                 Source(clonetoken.KIND_PVC, "team", "fedora"), id="pvc-defaults-to-dv-ns"),
    pytest.param({"source": {"snapshot": {"namespace": "golden", "name": "snap"}}},
                 Source(clonetoken.KIND_SNAPSHOT, "golden", "snap"), id="snapshot"),
    pytest.param({"sourceRef": {"kind": "DataSource", "namespace": "catalog", "name": "f"}},
                 DataSourceRef("catalog", "f"), id="sourceRef"),
    pytest.param({"sourceRef": {"kind": "DataSource", "name": "f"}},
                 DataSourceRef("team", "f"), id="sourceRef-defaults-to-dv-ns"),
    pytest.param({"sourceRef": {"kind": "Other", "name": "f"}}, None, id="sourceRef-other"),
    pytest.param({"source": {"http": {"url": "http://x/y"}}}, None, id="import"),
    pytest.param({"source": {"upload": {}}}, None, id="upload"),
    pytest.param({}, None, id="no-source"),
])
def test_what_a_datavolume_clones(spec, expected):
    assert cloneauth.dv_source(dv(spec)) == expected


@pytest.mark.parametrize(("ds", "expected"), [
    pytest.param({"spec": {"source": {"pvc": {"namespace": "golden", "name": "f"}}}},
                 Source(clonetoken.KIND_PVC, "golden", "f"), id="pvc"),
    pytest.param({"spec": {"source": {"pvc": {"name": "f"}}}},
                 Source(clonetoken.KIND_PVC, "catalog", "f"), id="pvc-in-the-datasource-ns"),
    pytest.param({"spec": {"source": {"snapshot": {"namespace": "golden", "name": "s"}}}},
                 Source(clonetoken.KIND_SNAPSHOT, "golden", "s"), id="snapshot"),
    pytest.param({"spec": {"source": {"dataSource": {"name": "other"}}},
                  "status": {"source": {"pvc": {"namespace": "golden", "name": "g"}}}},
                 Source(clonetoken.KIND_PVC, "golden", "g"), id="chained-uses-status"),
    pytest.param({"spec": {"source": {"dataSource": {"name": "other"}}}}, None,
                 id="chained-unresolved"),
    pytest.param({"spec": {"source": {}}}, None, id="empty"),
])
def test_what_a_datasource_points_at(ds, expected):
    ds = {"metadata": {"name": "ds", "namespace": "catalog"}, **ds}
    assert cloneauth.datasource_source(ds) == expected


@pytest.mark.parametrize(("annotations", "expected"), [
    ({clone.CLONE_REQUEST_ANNOTATION: "golden/disk"}, Source(clonetoken.KIND_PVC, "golden",
                                                             "disk")),
    ({"other": "x"}, None),
    (None, None),
])
def test_a_legacy_clone_request(annotations, expected):
    pvc = {"metadata": {"name": "p", "namespace": "team"}}
    if annotations is not None:
        pvc["metadata"]["annotations"] = annotations
    assert cloneauth.pvc_source(pvc) == expected


@pytest.mark.parametrize("value", ["disk", "/disk", "golden/", "a/b/c", ""])
def test_a_malformed_clone_request_is_a_precise_error(value):
    pvc = {"metadata": {"annotations": {clone.CLONE_REQUEST_ANNOTATION: value}}}
    with pytest.raises(BadRequest, match="must be <namespace>/<name>"):
        cloneauth.pvc_source(pvc)


def test_a_datavolumes_own_claim_is_recognised_and_a_lookalike_is_not():
    owned = {"metadata": {"ownerReferences": [
        {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "d"}]}}
    lookalike = {"metadata": {"ownerReferences": [
        {"apiVersion": "example.com/v1", "kind": "DataVolume", "name": "d"}]}}
    assert cloneauth.owned_by_datavolume(owned)
    assert not cloneauth.owned_by_datavolume(lookalike)
    assert not cloneauth.owned_by_datavolume({"metadata": {}})


def test_a_pvc_is_authorised_by_datavolumes_source_then_by_pods_as_cdi_does():
    alternatives = cloneauth.alternatives(Source(clonetoken.KIND_PVC, "golden", "disk"))
    assert alternatives == (
        ({"namespace": "golden", "verb": "create", "group": "cdi.kubevirt.io",
          "resource": "datavolumes", "subresource": "source", "name": "disk"},),
        ({"namespace": "golden", "verb": "create", "group": "", "resource": "pods",
          "name": "disk"},),
    )


def test_a_snapshot_needs_datavolumes_source_or_both_pods_and_pvcs():
    alternatives = cloneauth.alternatives(Source(clonetoken.KIND_SNAPSHOT, "golden", "s"))
    assert [[a["resource"] for a in alt] for alt in alternatives] == [
        ["datavolumes"], ["pods", "persistentvolumeclaims"]]
    assert all(a["namespace"] == "golden" and a["verb"] == "create"
               for alt in alternatives for a in alt)


def test_the_review_carries_the_requester_unchanged():
    request = {"userInfo": {
        "username": "system:serviceaccount:team:robot", "uid": "u-1",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:team",
                   "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}}}
    user = UserInfo.from_request(request)
    attrs = cloneauth.alternatives(Source(clonetoken.KIND_PVC, "golden", "disk"))[0][0]
    body = cloneauth.review(user, attrs)
    assert body == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "system:serviceaccount:team:robot", "uid": "u-1",
                 "groups": ["system:serviceaccounts", "system:serviceaccounts:team",
                            "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]},
                 "resourceAttributes": attrs}}


def test_a_user_without_uid_or_extra_sends_neither():
    body = cloneauth.review(UserInfo.from_request({"userInfo": {"username": "bob"}}),
                            {"verb": "create"})
    assert body["spec"] == {"user": "bob", "groups": [],
                            "resourceAttributes": {"verb": "create"}}


def test_the_denial_is_cdis_message_on_cdis_field():
    message = cloneauth.denial(UserInfo("bob"), "golden")
    assert message == "User bob has insufficient permissions in clone source namespace golden"
    answer = cloneauth.refused("uid-7", message)["response"]
    assert answer["uid"] == "uid-7" and answer["allowed"] is False
    assert answer["status"]["code"] == 422
    assert answer["status"]["message"] == message
    assert answer["status"]["details"]["causes"] == [
        {"type": "FieldValueInvalid", "message": message, "field": "spec.source.PVC.namespace"}]


@pytest.mark.parametrize("annotations", [None, {}, {"keep": "me"},
                                         {clone.TOKEN_ANNOTATION: "forged", "keep": "me"}])
def test_the_patch_sets_the_token_and_keeps_every_other_annotation(annotations):
    obj = dv({"source": {"pvc": {"namespace": "g", "name": "d"}}}, annotations=annotations)
    answer = cloneauth.response("uid-1", patch=cloneauth.token_patch(obj, "T"))["response"]
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patched = apply_adds(obj, json.loads(base64.b64decode(answer["patch"])))
    expected = {k: v for k, v in (annotations or {}).items() if k != clone.TOKEN_ANNOTATION}
    assert patched["metadata"]["annotations"] == {**expected, clone.TOKEN_ANNOTATION: "T"}
    assert patched["spec"] == obj["spec"]


def test_an_allowing_answer_without_a_patch_has_none():
    assert cloneauth.response("u")["response"] == {"uid": "u", "allowed": True}


def test_the_token_names_the_source_and_the_target():
    ref = cloneauth.clone_ref(Source(clonetoken.KIND_SNAPSHOT, "golden", "s"), "team", "t")
    assert ref == clonetoken.CloneRef("golden", "s", "team", "t", clonetoken.KIND_SNAPSHOT)


@pytest.mark.parametrize(("annotations", "expected"), [
    ({"cdi.kubevirt.io/storage.prePopulated": "x"}, True),
    ({"cdi.kubevirt.io/storage.checkStaticVolume": ""}, True),
    ({"other": ""}, False),
    (None, False),
])
def test_pre_populated_and_static_volumes_may_go_without_a_token(annotations, expected):
    assert cloneauth.no_token_okay(dv({}, annotations=annotations)) is expected

"""Decoding a create: what is echoed, what is refused as malformed (400) or invalid (422)."""

from __future__ import annotations

import re

import pytest

from apiserver import access, authn, statuses, tokenrequests
from apiserver.tokenrequests import Invalid, Malformed


def body(**kw: object) -> dict[str, object]:
    out: dict[str, object] = {"apiVersion": "upload.cdi.kubevirt.io/v1beta1",
                              "kind": "UploadTokenRequest",
                              "metadata": {"name": "t", "namespace": "ns",
                                           "labels": {"a": "b"}, "uid": "ignored"},
                              "spec": {"pvcName": "disk.v1"}}
    out.update(kw)
    return out


def test_a_request_echoes_name_labels_and_the_url_namespace():
    req = tokenrequests.parse(body(), "ns")
    assert req == tokenrequests.Request("ns", "disk.v1", {"name": "t", "labels": {"a": "b"}})
    assert tokenrequests.answer(req, "T") == {
        "kind": "UploadTokenRequest", "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
        "metadata": {"name": "t", "labels": {"a": "b"}, "namespace": "ns"},
        "spec": {"pvcName": "disk.v1"}, "status": {"token": "T"}}


def test_type_meta_and_namespace_may_be_left_out():
    req = tokenrequests.parse({"spec": {"pvcName": "d"}}, "ns")
    assert (req.namespace, req.pvc, req.metadata) == ("ns", "d", {})


@pytest.mark.parametrize(("doc", "query", "needle"), [
    pytest.param(body(apiVersion="v1"), "", "API version in the data (v1)", id="version"),
    pytest.param(body(kind="Pod"), "", "kind in the data (Pod)", id="kind"),
    pytest.param(body(metadata={"namespace": "other"}), "", "does not match the namespace",
                 id="namespace"),
    pytest.param(body(spec=["x"]), "", "spec must be an object", id="spec-list"),
    pytest.param(body(spec={"pvcName": 7}), "", "expected a string", id="pvc-number"),
    pytest.param(body(extra=1), "Strict", 'unknown field "extra"', id="strict"),
    pytest.param(body(), "Loud", 'Unsupported value: "Loud"', id="bad-directive"),
    pytest.param("text", "", "not a JSON object", id="not-object"),
])
def test_malformed(doc: object, query: str, needle: str):
    with pytest.raises(Malformed, match=re.escape(needle)):
        tokenrequests.parse(doc, "ns", query)


@pytest.mark.parametrize(("pvc", "field_message"), [
    pytest.param(None, "Required value", id="missing"),
    pytest.param("", "Required value", id="empty"),
    pytest.param("UPPER", 'Invalid value: "UPPER": a lowercase RFC 1123', id="upper"),
    pytest.param("a..b", 'Invalid value: "a..b"', id="empty-label"),
    pytest.param("x" * 254, "no more than 253 characters", id="too-long"),
])
def test_invalid_pvc_names(pvc: object, field_message: str):
    with pytest.raises(Invalid) as info:
        tokenrequests.parse(body(spec={"pvcName": pvc}), "ns")
    (cause,) = info.value.causes
    assert cause.field == "spec.pvcName"
    assert field_message in cause.message
    st = statuses.invalid(info.value.name, info.value.causes)
    assert st["message"].startswith(
        'UploadTokenRequest.upload.cdi.kubevirt.io "t" is invalid: spec.pvcName: ')


def test_unknown_fields_warn_by_default_and_vanish_when_ignored():
    doc = body(spec={"pvcName": "d", "size": 1}, extra=True)
    assert tokenrequests.parse(doc, "ns").warnings == (
        'unknown field "extra"', 'unknown field "spec.size"')
    assert tokenrequests.parse(doc, "ns", "Ignore").warnings == ()


def test_a_dry_run_is_marked_and_gets_no_token():
    req = tokenrequests.parse(body(), "ns", dry_run=("All",))
    assert req.dry_run
    assert tokenrequests.answer(req, None)["status"] == {}


def test_the_review_carries_the_whole_identity_and_only_allowed_means_yes():
    ident = authn.Identity("alice", "u1", ("g1",), {"k": ("v",)})
    sar = access.review(ident, "ns")
    assert sar["spec"] == {"user": "alice", "uid": "u1", "groups": ["g1"],
                           "extra": {"k": ["v"]},
                           "resourceAttributes": {"namespace": "ns", "verb": "create",
                                                  "group": "upload.cdi.kubevirt.io",
                                                  "version": "v1beta1",
                                                  "resource": "uploadtokenrequests"}}
    assert access.decision({"status": {"allowed": True}}).allowed
    assert not access.decision({"status": {"allowed": "true"}}).allowed
    assert not access.decision({"status": {}}).allowed
    denied = access.decision({"status": {"allowed": False, "denied": True, "reason": "no"}})
    assert denied == access.Decision(False, "no")


def test_the_body_virtctl_sends_decodes_without_warnings():
    # client-go's JSON for virtctl's UploadTokenRequest (creationTimestamp null, empty status).
    sent = {"kind": "UploadTokenRequest", "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
            "metadata": {"name": "token-for-dv-disk", "namespace": "ns",
                         "creationTimestamp": None},
            "spec": {"pvcName": "disk"}, "status": {}}
    req = tokenrequests.parse(sent, "ns")
    assert (req.pvc, req.warnings, req.metadata) == ("disk", (), {"name": "token-for-dv-disk"})

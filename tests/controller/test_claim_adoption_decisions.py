"""Claim adoption and CDI's checkpoint-update admission, decided purely."""

from __future__ import annotations

import copy

import pytest

from controller import adoption, validation, webhook
from tests.controller import factories as f

ALLOW = adoption.ALLOW_CLAIM_ADOPTION


def review(obj, operation="CREATE", old=None):
    return {"request": {"uid": "u", "operation": operation, "object": obj, "oldObject": old}}


@pytest.mark.parametrize(("dv_ann", "pvc_ann", "gate", "requires_work"), [
    ({}, {}, False, True),
    ({ALLOW: "true"}, {}, False, False),
    ({ALLOW: "1"}, {}, False, False),
    ({ALLOW: "false"}, {}, True, True),
    ({ALLOW: "yes"}, {}, True, True),
    ({}, {}, True, False),
    ({ALLOW: "true"}, {adoption.CREATED_FOR_DATAVOLUME: "dv-uid"}, True, True),
    ({}, {adoption.POPULATED_FOR: "dv1"}, False, False),
    ({}, {adoption.POPULATED_FOR: "other"}, False, True),
], ids=["nothing", "annotation", "go-bool-1", "annotation-beats-gate", "unparsable-is-false",
        "gate", "own-pvc-never", "populated-for-it", "populated-for-another"])
def test_when_an_existing_claim_needs_no_transfer(dv_ann, pvc_ann, gate, requires_work):
    dv, pvc = f.dv(annotations=dv_ann), f.pvc(annotations=pvc_ann)
    assert adoption.requires_work(pvc, dv, gate) is requires_work


def test_admission_refuses_an_existing_claim_in_cdis_words():
    out = webhook.review_response(review(f.dv()), f.pvc())
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"] == "Destination PVC ns/dv1 already exists"


def test_admission_allows_adoption_and_a_claim_another_datavolume_controls():
    assert webhook.review_response(review(f.dv(annotations={ALLOW: "true"})), f.pvc())[
        "response"]["allowed"] is True
    assert webhook.review_response(review(f.dv()), f.pvc(), adoption_gate=True)[
        "response"]["allowed"] is True
    owned = f.pvc()
    owned["metadata"]["ownerReferences"] = [{"kind": "DataVolume", "name": "dv1",
                                            "uid": "old", "controller": True}]
    assert webhook.review_response(review(f.dv()), owned)["response"]["allowed"] is True


def test_adoption_makes_the_datavolume_controller_unless_another_controls_it():
    pvc = f.pvc()
    pvc["metadata"]["ownerReferences"] = [{"kind": "Thing", "name": "t", "uid": "t1"}]
    refs = adoption.adopted_owner_refs(pvc, f.dv())
    assert refs is not None and [r["uid"] for r in refs] == ["t1", "dv-uid"]
    assert refs[-1]["controller"] is True and refs[-1]["kind"] == "DataVolume"
    pvc["metadata"]["ownerReferences"][0]["controller"] = True
    assert adoption.adopted_owner_refs(pvc, f.dv()) is None


VDDK = {"vddk": {"url": "https://vcenter", "uuid": "u", "backingFile": "b",
                 "thumbprint": "t", "secretRef": "s"}}


def test_checkpoint_updates_of_a_multi_stage_import_are_admitted():
    old = f.dv(source=VDDK, checkpoints=[{"previous": "", "current": "c1"}])
    new = copy.deepcopy(old)
    new["spec"]["checkpoints"].append({"previous": "c1", "current": "c2"})
    new["spec"]["finalCheckpoint"] = True
    assert validation.validate(new, old) == []
    new["spec"]["source"]["vddk"]["url"] = "https://elsewhere"
    assert validation.validate(new, old) == [validation.SPEC_UPDATE_REFUSED]


def test_checkpoint_updates_of_a_single_stage_source_are_refused():
    old = f.dv(source={"http": {"url": "http://h/x"}})
    new = copy.deepcopy(old)
    new["spec"]["checkpoints"] = [{"previous": "", "current": "c1"}]
    assert validation.validate(new, old) == ["Cannot update DataVolume Spec"]

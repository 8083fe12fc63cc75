"""What the proxy does with an upload for a PVC, from the PVC's annotations alone."""

from __future__ import annotations

from typing import Any

import pytest

from cdicontract import annotations as ann
from uploadproxy.proxy import target
from uploadproxy.proxy.refusal import Refused

PATH = "/v1beta1/upload-async"


def pvc(annotations: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "disk", "annotations": annotations, **meta}}


READY = {ann.UPLOAD_TARGET: "", ann.POD_READY: "true"}


@pytest.mark.parametrize(("obj", "status"), [
    (None, 503),
    (pvc({ann.POD_READY: "true"}), 503),
    (pvc({**READY, ann.POD_PHASE: "Succeeded"}), 409),
    (pvc(READY, deletionTimestamp="2026-12-01T00:00:00Z"), 503),
    (pvc({**READY, ann.CONTENT_TYPE: "iso"}), 503),
], ids=["missing", "not-an-upload-target", "succeeded", "being-deleted", "bad-content-type"])
def test_refusals_that_waiting_cannot_change(obj: dict[str, Any] | None, status: int) -> None:
    with pytest.raises(Refused) as e:
        target.judge(obj, "disk", PATH)
    assert e.value.status == status
    assert "disk" in e.value.message


@pytest.mark.parametrize("ready", [None, "false", "", "yes", "0"],
                         ids=["absent", "false", "empty", "not-go-bool", "zero"])
def test_not_ready_means_wait(ready: str | None) -> None:
    notes = {ann.UPLOAD_TARGET: ""}
    if ready is not None:
        notes[ann.POD_READY] = ready
    assert isinstance(target.judge(pvc(notes), "disk", PATH), target.Wait)


@pytest.mark.parametrize("ready", ["true", "1", "t", "T", "TRUE", "True"])
def test_ready_as_go_parses_it_goes_to_the_same_path(ready: str) -> None:
    verdict = target.judge(pvc({ann.UPLOAD_TARGET: "", ann.POD_READY: ready}), "disk", PATH)
    assert verdict == target.Ready(PATH)


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1beta1/upload", "/v1beta1/upload-archive"),
    ("/v1alpha1/upload-form-async", "/v1alpha1/upload-archive"),
])
def test_an_archive_pvc_takes_the_archive_path(path: str, expected: str) -> None:
    verdict = target.judge(pvc({**READY, ann.CONTENT_TYPE: "archive"}), "disk", path)
    assert verdict == target.Ready(expected)


def test_a_failed_pod_phase_still_waits_for_ready_not_409() -> None:
    verdict = target.judge(pvc({ann.UPLOAD_TARGET: "", ann.POD_PHASE: "Failed"}), "disk", PATH)
    assert isinstance(verdict, target.Wait)

"""A transfer pod whose image cannot be pulled: the PVC's Running condition and the
DataVolume say so as CDI does (reason ImagePullFailed, message starting with "failed to
pull image: <image>"), carrying the kubelet's reason and message; nothing ends."""

from __future__ import annotations

import pytest

from controller import dvstatus
from controller.transfers import podstate
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
IMPORT = {P + "storage.import.endpoint": "http://h/x", P + "storage.import.source": "http"}
IMAGE = "quay.io/cdi-py/importer:does-not-exist"
NOW = "2024-05-01T10:00:00Z"
PULL_ERROR = f'failed to pull and unpack image "{IMAGE}": manifest unknown'
REASON, MESSAGE = P + "storage.condition.running.reason", P + "storage.condition.running.message"


def pulling(reason: str, message: str, *, image: str = IMAGE) -> dict:
    pod = f.pod(phase="Pending", state={"waiting": {"reason": reason, "message": message}})
    pod["status"]["containerStatuses"][0]["image"] = image
    return pod


def decide(pod: dict, annotations: dict | None = None) -> podstate.PodDecision:
    pvc = f.pvc(annotations={**IMPORT, **(annotations or {})})
    return podstate.decide(pvc, pod, "importer-dv1", wffc=False)


def test_err_image_pull_names_cdis_reason_the_image_and_the_kubelets_words():
    d = decide(pulling("ErrImagePull", PULL_ERROR))
    assert d.annotations[REASON] == "ImagePullFailed"
    assert d.annotations[MESSAGE] == f"failed to pull image: {IMAGE}: ErrImagePull: {PULL_ERROR}"
    assert d.annotations[P + "storage.condition.running"] == "false"
    # Not an end: the image may yet appear (kubelets keep retrying), the pod stays.
    assert not d.delete_pod and not d.create_pod
    assert d.annotations[P + "storage.pod.phase"] == "Pending"


def test_back_off_keeps_the_reason_the_pull_failed_for_the_same_image():
    first = decide(pulling("ErrImagePull", PULL_ERROR)).annotations
    d = decide(pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'), first)
    assert REASON not in d.annotations and MESSAGE not in d.annotations  # nothing to write


def test_back_off_seen_first_says_what_the_kubelet_says():
    d = decide(pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'))
    assert d.annotations[MESSAGE] == (
        f'failed to pull image: {IMAGE}: ImagePullBackOff: Back-off pulling image "{IMAGE}"')


def test_another_image_does_not_inherit_an_old_reason():
    first = decide(pulling("ErrImagePull", PULL_ERROR)).annotations
    d = decide(pulling("ImagePullBackOff", "Back-off pulling image", image="other:1"), first)
    assert d.annotations[MESSAGE].startswith("failed to pull image: other:1: ImagePullBackOff")


def test_the_image_the_pod_asks_for_is_named():
    pod = f.pod(phase="Pending", state={"waiting": {"reason": "InvalidImageName"}})
    pod["spec"] = {"containers": [{"name": "importer", "image": "UPPER/case"}]}
    pod["status"]["containerStatuses"][0]["image"] = "docker.io/UPPER/case:latest"
    assert decide(pod).annotations[MESSAGE] == (
        "failed to pull image: UPPER/case: InvalidImageName")


def _dv_result(pod: dict, annotations: dict, dv: dict | None = None) -> dvstatus.Result:
    pvc = f.pvc(annotations={**IMPORT, **annotations})
    return dvstatus.compute(dvstatus.Observed(dv or f.dv(), pvc, pod, False, NOW))


def test_the_datavolume_condition_and_one_warning_event_carry_it():
    pod = pulling("ErrImagePull", PULL_ERROR)
    annotations = decide(pod).annotations
    result = _dv_result(pod, annotations)
    running = next(c for c in result.status["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"]) == ("False", "ImagePullFailed")
    assert running["message"] == annotations[MESSAGE]
    assert result.phase == "ImportScheduled"
    warnings = [e for e in result.events if e.type == "Warning"]
    assert warnings == [dvstatus.Event("Warning", "ImagePullFailed", annotations[MESSAGE])]
    # The next look at the same world says nothing again.
    again = _dv_result(pod, annotations, f.dv(status=result.status))
    assert [e for e in again.events if e.type == "Warning"] == []


@pytest.mark.parametrize("waiting", ["ContainerCreating", "CreateContainerConfigError"])
def test_other_waits_are_not_pull_failures(waiting):
    pod = f.pod(phase="Pending", state={"waiting": {"reason": waiting, "message": "m"}})
    annotations = decide(pod).annotations
    assert annotations[REASON] == waiting
    assert [e for e in _dv_result(pod, annotations).events if e.type == "Warning"] == []


def test_a_clone_source_that_cannot_pull_makes_the_datavolume_not_running():
    from controller.transfers.clone import objects as cloneobjects

    message = "failed to pull image: quay.io/cdi-py/cloner:nope: ErrImagePull: unknown"
    source = {cloneobjects.SOURCE_RUNNING: "false",
              cloneobjects.SOURCE_RUNNING_REASON: "ImagePullFailed",
              cloneobjects.SOURCE_RUNNING_MESSAGE: message}
    target_running = {P + "storage.condition.running": "true",
                      P + "storage.condition.running.reason": "Pod is running",
                      P + "storage.condition.running.message": ""}
    result = _dv_result(f.pod(), {**target_running, **source})
    running = next(c for c in result.status["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"], running["message"]) == (
        "False", "ImagePullFailed", message)
    assert dvstatus.Event("Warning", "ImagePullFailed", message) in result.events
    # Once the source pod runs, the target's own condition is back.
    back = _dv_result(f.pod(), {**target_running, **source,
                                cloneobjects.SOURCE_RUNNING: "true",
                                cloneobjects.SOURCE_RUNNING_REASON: "Pod is running",
                                cloneobjects.SOURCE_RUNNING_MESSAGE: ""})
    running = next(c for c in back.status["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"]) == ("True", "Pod is running")


def test_neither_side_running_says_both_as_cdi_does():
    from controller.transfers.clone import objects as cloneobjects

    result = _dv_result(f.pod(phase="Pending", state={"waiting": {}}), {
        P + "storage.condition.running": "false",
        P + "storage.condition.running.reason": "Pending",
        P + "storage.condition.running.message": "server waits",
        cloneobjects.SOURCE_RUNNING: "false",
        cloneobjects.SOURCE_RUNNING_REASON: "ImagePullFailed",
        cloneobjects.SOURCE_RUNNING_MESSAGE: "failed to pull image: x"})
    running = next(c for c in result.status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "Pending and ImagePullFailed"
    assert running["message"] == "server waits and failed to pull image: x"

"""A transfer pod's lifecycle on its PVC: a pure function of the PVC and the pod.

The PVC's `storage.pod.*` / `storage.condition.*` annotations are both the legacy API's
output and the durable record of the outcome: once `storage.pod.phase` is Succeeded or
Failed the transfer is over, and a lost or deleted pod is never recreated. Import and
upload share this; `PodStyle` holds what differs (the pod-name annotation, what "ready"
means, the words of the Completed condition).

Restarts are bounded (ours; CDI restarts forever): a pod that failed without a permanent
reason (a retryable one, OOMKilled, killed by a signal: the kubelet backs off between
runs) and has been restarted more than `restart_limit` times ends the transfer Failed
with its last reason, the message saying how many restarts it took.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdicontract import annotations as ann
from cdicontract import scratch
from cdicontract.reasons import Reason, is_permanent
from controller.podview import PodView, failure_reason, pull_failure, view
from controller.runtime import objects as o
from controller.runtime.objects import Obj

SUCCEEDED = "Succeeded"
FAILED = "Failed"
RUNNING = "Running"
PENDING = "Pending"


@dataclass(frozen=True)
class PodStyle:
    pod_name_annotation: str
    complete_message: str
    ready_means_running: bool
    """Import: `storage.pod.ready` is true while the container runs. Upload: only while
    the pod is Ready (the proxy sends bytes only then)."""


IMPORT_STYLE = PodStyle(ann.IMPORT_POD_NAME, "Import Complete", ready_means_running=True)


@dataclass(frozen=True)
class PodDecision:
    create_pod: bool = False
    delete_pod: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    """Annotations to set on the PVC (only the ones that change)."""
    waiting_for_consumer: bool = False


def is_finished(pvc: Obj) -> bool:
    return o.annotations(pvc).get(ann.POD_PHASE) in (SUCCEEDED, FAILED)


def needs_consumer(pvc: Obj, wffc: bool) -> bool:
    """WaitForFirstConsumer: no importer pod until the PVC is bound, unless asked to bind now."""
    bound = o.status(pvc).get("phase") == "Bound"
    immediate = ann.IMMEDIATE_BINDING in o.annotations(pvc)
    return wffc and not bound and not immediate


def _running(status: bool, reason: str, message: str) -> dict[str, str]:
    return {
        ann.CONDITION_RUNNING: "true" if status else "false",
        ann.CONDITION_RUNNING_REASON: reason,
        ann.CONDITION_RUNNING_MESSAGE: message,
    }


def changed_running(pvc: Obj, reason: str, message: str) -> dict[str, str]:
    """The Running-condition annotations saying the pod is not running and why (only the
    ones that change)."""
    current = o.annotations(pvc)
    return {k: v for k, v in _running(False, reason, message).items() if current.get(k) != v}


def _gave_up(v: PodView, restarts: int, limit: int) -> bool:
    """The pod failed again after `limit` restarts and is not running (0: no limit)."""
    latest = v.latest_termination
    return (limit > 0 and restarts > limit and not v.running
            and latest is not None and latest.failed)


def _observe(pod_name: str, v: PodView, style: PodStyle, current: dict[str, str],  # noqa: PLR0917
             restarts: int, restart_limit: int) -> tuple[dict[str, str], bool]:
    """Annotations describing the pod, and whether the pod must go (the transfer ended).
    `current`: the PVC's annotations now."""
    out = {style.pod_name_annotation: pod_name, ann.POD_RESTARTS: str(v.restarts)}
    latest = v.latest_termination
    if v.phase == SUCCEEDED or (v.terminated is not None and not v.terminated.failed):
        out[ann.POD_PHASE] = SUCCEEDED
        out[ann.POD_READY] = "false"
        out.update(_running(False, "Completed", style.complete_message))
        report = v.terminated.report if v.terminated is not None else None
        if report is not None and report.preallocation_applied is True:
            out[ann.PREALLOCATION_APPLIED] = "true"
        return out, True
    if latest is not None and latest.failed:
        reason, message = failure_reason(latest)
        if latest.report is not None and is_permanent(latest.report.reason):
            out[ann.POD_PHASE] = FAILED
            out[ann.POD_READY] = "false"
            out.update(_running(False, reason, message))
            return out, True
        if _gave_up(v, restarts, restart_limit):
            out[ann.POD_PHASE] = FAILED
            out[ann.POD_READY] = "false"
            out.update(_running(False, reason, (
                f"{message}; gave up: restarted {restarts} times, more than the limit "
                f"{restart_limit} (CDIConfig spec.podRestartLimit)")))
            return out, True
    if v.phase == FAILED:
        # Evicted or otherwise lost as a whole: the next reconcile makes a new pod.
        out[ann.POD_PHASE] = PENDING
        out.update(_running(False, "Error", "transfer pod failed; it will be recreated"))
        return out, True
    out[ann.POD_PHASE] = v.phase
    ready = v.running if style.ready_means_running else v.ready
    out[ann.POD_READY] = "true" if ready else "false"
    if v.unschedulable_message is not None:
        out.update(_running(False, "Unschedulable", v.unschedulable_message))
    elif v.image_pull_failed:
        out.update(_running(False, *pull_failure(
            v, current.get(ann.CONDITION_RUNNING_MESSAGE, ""))))
    elif v.running:
        if latest is not None and latest.failed:
            reason, message = failure_reason(latest)
            out.update(_running(True, "Pod is running", f"retrying after {reason}: {message}"))
        else:
            out.update(_running(True, "Pod is running", ""))
    elif latest is not None and latest.failed:
        out.update(_running(False, *failure_reason(latest)))
    else:
        out.update(_running(False, v.waiting_reason or PENDING, v.waiting_message))
    return out, False


def _wants_scratch(v: PodView) -> bool:
    t = v.terminated
    return (t is not None and t.report is not None
            and t.report.reason is Reason.SCRATCH_SPACE_REQUIRED)


def _mounts_scratch(pod: Obj) -> bool:
    return any(vol.get("name") == scratch.VOLUME_NAME
               for vol in o.spec(pod).get("volumes") or [])


def decide(pvc: Obj, pod: Obj | None, pod_name: str, wffc: bool,  # noqa: PLR0917
           style: PodStyle = IMPORT_STYLE, restart_limit: int = 0) -> PodDecision:
    """`restart_limit`: restarts after which a failing pod ends the transfer (0: none)."""
    current = o.annotations(pvc)

    def changed(a: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in a.items() if current.get(k) != v}

    if o.deleting(pvc) or is_finished(pvc):
        retain = current.get(ann.POD_RETAIN_AFTER_COMPLETION) == "true" and not o.deleting(pvc)
        return PodDecision(delete_pod=pod is not None and not o.deleting(pod) and not retain)
    if pod is None:
        if needs_consumer(pvc, wffc):
            return PodDecision(waiting_for_consumer=True)
        return PodDecision(create_pod=True,
                              annotations=changed({style.pod_name_annotation: pod_name}))
    if o.deleting(pod):
        return PodDecision()
    v = view(pod)
    restarts = max(v.restarts, int(current.get(ann.POD_RESTARTS) or 0))
    if _wants_scratch(v) and _mounts_scratch(pod):
        # A scratch volume was there and not found: another pod would say the same.
        return PodDecision(delete_pod=current.get(ann.POD_RETAIN_AFTER_COMPLETION) != "true",
                           annotations=changed({
            ann.POD_PHASE: FAILED, ann.POD_READY: "false", ann.POD_RESTARTS: str(restarts),
            **_running(False, scratch.CONDITION_REASON,
                       f"{scratch.MESSAGE}, although a scratch volume was mounted")}))
    if _wants_scratch(v):
        # Not an outcome: the pod goes (even when retained) and the next one mounts a
        # scratch PVC. The phase stays Pending: the clean exit is not a success.
        return PodDecision(delete_pod=True, annotations=changed({
            scratch.REQUIRES_SCRATCH: "true", ann.POD_PHASE: PENDING, ann.POD_READY: "false",
            ann.POD_RESTARTS: str(restarts),
            **_running(False, scratch.CONDITION_REASON, scratch.MESSAGE)}))
    observed, done = _observe(pod_name, v, style, current, restarts, restart_limit)
    observed[ann.POD_RESTARTS] = str(restarts)
    retain = current.get(ann.POD_RETAIN_AFTER_COMPLETION) == "true"
    return PodDecision(delete_pod=done and not retain, annotations=changed(observed))

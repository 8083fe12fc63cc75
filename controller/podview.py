"""What a transfer pod's status says, reduced to the facts the controller decides on."""

from __future__ import annotations

from dataclasses import dataclass

from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller.runtime import objects as o
from controller.runtime.objects import Obj

_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
# Where CDI has its own name for a failure, users' tooling matches on it.
_CDI_REASONS = {Reason.CHECKSUM_MISMATCH: "ChecksumError"}


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    report: TerminationReport | None
    container: str = ""

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


@dataclass(frozen=True)
class PodView:
    phase: str
    ip: str
    restarts: int
    running: bool
    ready: bool
    """The pod's Ready condition is True (its readiness probe passes)."""
    waiting_reason: str
    waiting_message: str
    terminated: Termination | None
    last_terminated: Termination | None
    unschedulable_message: str | None
    image: str = ""
    """The first container's image as the pod asks for it (the status's when the spec is
    not at hand); a kubelet reports the same name while it cannot pull it."""

    @property
    def latest_termination(self) -> Termination | None:
        return self.terminated or self.last_terminated

    @property
    def image_pull_failed(self) -> bool:
        return self.waiting_reason in _PULL_FAILURES


def _termination(state: Obj | None, container: str) -> Termination | None:
    t = (state or {}).get("terminated")
    if not isinstance(t, dict):
        return None
    message = str(t.get("message") or "").strip()
    report = TerminationReport.from_termination_message(message) if message else None
    return Termination(int(t.get("exitCode", 0)), str(t.get("reason") or ""), report,
                       container)


def view(pod: Obj) -> PodView:
    st = o.status(pod)
    statuses = st.get("containerStatuses") or []
    cs: Obj = statuses[0] if statuses else {}
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    unschedulable = None
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            unschedulable = str(cond.get("message") or "pod is unschedulable")
    return PodView(
        phase=str(st.get("phase") or "Pending"),
        ip=str(st.get("podIP") or ""),
        restarts=int(cs.get("restartCount") or 0),
        running="running" in state,
        ready=any(c.get("type") == "Ready" and c.get("status") == "True"
                  for c in st.get("conditions") or []),
        waiting_reason=str(waiting.get("reason") or ""),
        waiting_message=str(waiting.get("message") or ""),
        terminated=_termination(state, str(cs.get("name") or "")),
        last_terminated=_termination(cs.get("lastState"), str(cs.get("name") or "")),
        unschedulable_message=unschedulable,
        image=_spec_image(pod) or str(cs.get("image") or ""),
    )


def _spec_image(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image") or "")


PULL_FAILED_REASON = "ImagePullFailed"
"""CDI's ImagePullFailedReason, on the Running condition while the image cannot be pulled."""
PULL_FAILED_TEXT = "failed to pull image"
"""CDI's ImagePullFailureText, which its message starts with (tooling matches on it)."""


def pull_failure(v: PodView, current_message: str) -> tuple[str, str]:
    """(reason, message) while the pod's image cannot be pulled: CDI's reason and text,
    then the kubelet's reason and message. ErrImagePull says why; the ImagePullBackOff
    that follows only says it waits, so an earlier why for the same image is kept (and
    the condition does not flip at every back-off)."""
    head = f"{PULL_FAILED_TEXT}: {v.image}"
    if v.waiting_reason == "ImagePullBackOff" and current_message.startswith(head + ": "):
        return PULL_FAILED_REASON, current_message
    detail = f"{v.waiting_reason}: {v.waiting_message}" if v.waiting_message else (
        v.waiting_reason)
    return PULL_FAILED_REASON, f"{head}: {detail}"


def failure_reason(t: Termination) -> tuple[str, str]:
    """(reason, message) of a failed run: the typed report's, else the kubelet's."""
    if t.report is not None and t.report.reason is not Reason.COMPLETED:
        return _CDI_REASONS.get(t.report.reason, str(t.report.reason)), t.report.message
    return (t.reason or "Error"), (
        f"{t.container or 'container'} exited with code {t.exit_code}")

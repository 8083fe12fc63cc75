"""A DataVolume's status and events, computed purely from what the controller observes.

The phase follows CDI's sequence for the transfer (import: Pending -> ImportScheduled ->
ImportInProgress -> Succeeded; upload: Pending -> UploadScheduled -> UploadReady ->
Succeeded; or WaitForFirstConsumer / Failed), read from the PVC, its transfer annotations
and the transfer pod; the transfer's `Phases` name the steps and their events.
Timestamps change only when a condition changes, so an unchanged world gives an
identical status and no write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdicontract import annotations as ann
from cdicontract import api
from controller.podview import PULL_FAILED_REASON, view
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers import podstate
from controller.transfers.clone import objects as cloneobjects
from controller.transfers.importing.transfer import PHASES as IMPORT_PHASES
from controller.transfers.protocol import Phases


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    dv: Obj
    pvc: Obj | None
    pod: Obj | None
    wffc: bool
    now: str
    progress: str | None = None
    """Freshly scraped progress (`NN.NN%`), when the importer's metrics answered."""
    claim_error: tuple[str, str] | None = None
    """(reason, message) when the PVC cannot be built or is not ours."""
    unsupported: str | None = None
    phases: Phases = IMPORT_PHASES
    fixed_phase: str | None = None
    """A phase decided by the caller (a csi-clone or snapshot clone, filled by the
    storage: no pod to read); `phases.events` still names its event."""


@dataclass(frozen=True)
class Result:
    status: Obj
    events: list[Event] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", ""))


def _condition(old: list[Obj], ctype: str, status: bool, reason: str, message: str,  # noqa: PLR0917
               now: str) -> Obj:
    text = "True" if status else "False"
    prev = next((c for c in old if c.get("type") == ctype), None)
    if prev and (prev.get("status"), prev.get("reason", ""), prev.get("message", "")) == (
            text, reason, message):
        return prev
    changed_status = prev is None or prev.get("status") != text
    return {
        "type": ctype,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed_status else prev.get("lastTransitionTime", now),  # type: ignore[union-attr]
        "lastHeartbeatTime": now,
    }


def _bound(pvc: Obj | None, claim_error: tuple[str, str] | None) -> tuple[bool, str, str]:
    if claim_error is not None:
        return False, claim_error[0], claim_error[1]
    if pvc is None:
        return False, "NotFound", "No PVC found"
    phase = o.status(pvc).get("phase") or "Pending"
    if phase == "Bound":
        return True, "Bound", f"PVC {o.name(pvc)} Bound"
    if phase == "Lost":
        return False, "ClaimLost", f"PVC {o.name(pvc)} lost"
    a = o.annotations(pvc)
    if a.get(ann.CONDITION_BOUND, "").lower() == "false":
        # CDI's: what the PVC's latest event says it waits for (boundcondition).
        return (False, a.get(ann.CONDITION_BOUND_REASON, ""),
                f"target PVC {o.name(pvc)} Pending and {a.get(ann.CONDITION_BOUND_MESSAGE, '')}")
    return False, "Pending", f"PVC {o.name(pvc)} Pending"


def _phase(obs: Observed) -> str:
    pvc, pod = obs.pvc, obs.pod
    if obs.claim_error is not None or obs.unsupported is not None:
        return api.PHASE_PENDING
    if obs.fixed_phase is not None:
        return obs.fixed_phase
    if pvc is None:
        return api.PHASE_PENDING
    a = o.annotations(pvc)
    record = a.get(ann.POD_PHASE)
    if record == podstate.SUCCEEDED:
        return api.PHASE_SUCCEEDED
    if record == podstate.FAILED or o.status(pvc).get("phase") == "Lost":
        return api.PHASE_FAILED
    if pod is None:
        if podstate.needs_consumer(pvc, obs.wffc):
            return api.PHASE_WAIT_FOR_FIRST_CONSUMER
        if o.status(pvc).get("phase") == "Bound":
            return api.PHASE_PVC_BOUND
        return api.PHASE_PENDING
    v = view(pod)
    ended = v.terminated is not None or v.phase in ("Succeeded", "Failed")
    if obs.phases.running_needs_ready:
        # The PVC's record, not the pod: the proxy reads that record, so a client that
        # waits for this phase never finds the proxy still saying "not ready".
        started = a.get(ann.POD_READY) == "true" or ended
    else:
        started = (v.running or v.restarts > 0 or ended or v.last_terminated is not None)
    return obs.phases.running if started else obs.phases.scheduled


def _running(obs: Observed, phase: str) -> tuple[bool, str, str]:
    if obs.unsupported is not None:
        return False, "UnsupportedSource", obs.unsupported
    if obs.pvc is None:
        return False, "", ""
    a = o.annotations(obs.pvc)
    if a.get(cloneobjects.SOURCE_RUNNING) == "false":
        # CDI's updateWithTarget(Not)Running: a clone whose source pod does not run is not
        # running; both sides' words when neither runs.
        source = (a.get(cloneobjects.SOURCE_RUNNING_REASON, ""),
                  a.get(cloneobjects.SOURCE_RUNNING_MESSAGE, ""))
        if a.get(ann.CONDITION_RUNNING) == "false":
            return (False, f"{a.get(ann.CONDITION_RUNNING_REASON, '')} and {source[0]}",
                    f"{a.get(ann.CONDITION_RUNNING_MESSAGE, '')} and {source[1]}")
        return False, *source
    if ann.CONDITION_RUNNING in a:
        return (a[ann.CONDITION_RUNNING] == "true", a.get(ann.CONDITION_RUNNING_REASON, ""),
                a.get(ann.CONDITION_RUNNING_MESSAGE, ""))
    if phase == api.PHASE_WAIT_FOR_FIRST_CONSUMER:
        return False, "WaitForFirstConsumer", "waiting for a consumer of the PVC"
    return False, "", ""


def _progress(obs: Observed, phase: str) -> str:
    old = str(o.status(obs.dv).get("progress") or api.PROGRESS_UNKNOWN)
    if phase == api.PHASE_SUCCEEDED:
        return api.PROGRESS_DONE
    if phase == obs.phases.running:
        return obs.progress or old
    if phase == api.PHASE_FAILED:
        return old
    return api.PROGRESS_UNKNOWN


def _restarts(obs: Observed) -> int:
    counts = [int(o.status(obs.dv).get("restartCount") or 0)]
    if obs.pvc is not None:
        text = o.annotations(obs.pvc).get(ann.POD_RESTARTS, "0")
        counts.append(int(text) if text.isdigit() else 0)
    if obs.pod is not None:
        counts.append(view(obs.pod).restarts)
    return max(counts)


_COMMON_EVENTS = {
    api.PHASE_WAIT_FOR_FIRST_CONSUMER: ("Normal", "WaitForFirstConsumer",
                                        "PVC {pvc} waits for a consumer to be bound"),
}


def compute(obs: Observed) -> Result:
    old = o.status(obs.dv)
    old_conditions = list(old.get("conditions") or [])
    phase = _phase(obs)
    bound, b_reason, b_msg = _bound(obs.pvc, obs.claim_error)
    running, r_reason, r_msg = _running(obs, phase)
    ready = phase == api.PHASE_SUCCEEDED
    status: Obj = {
        "phase": phase,
        "progress": _progress(obs, phase),
        "restartCount": _restarts(obs),
        "claimName": o.name(obs.dv),
        "conditions": [
            _condition(old_conditions, "Bound", bound, b_reason, b_msg, obs.now),
            _condition(old_conditions, "Running", running, r_reason, r_msg, obs.now),
            _condition(old_conditions, "Ready", ready, phase if ready else "", "", obs.now),
        ],
    }
    events: list[Event] = []
    pvc_name = o.name(obs.dv)
    if phase != old.get("phase"):
        p = obs.phases
        if phase == p.running and old.get("phase") not in (p.scheduled, p.running):
            # The pod got going between two looks: users still see it was scheduled.
            etype, reason, template = p.events[p.scheduled]
            events.append(Event(etype, reason, template.format(pvc=pvc_name, msg=r_msg)))
        spec = p.events.get(phase) or _COMMON_EVENTS.get(phase)
        if spec is not None:
            etype, reason, template = spec
            events.append(Event(etype, reason, template.format(pvc=pvc_name, msg=r_msg)))
        if bound and old.get("phase") in (None, "", api.PHASE_PENDING,
                                          api.PHASE_WAIT_FOR_FIRST_CONSUMER):
            events.append(Event("Normal", "Bound", f"PVC {pvc_name} Bound"))
    if not running and PULL_FAILED_REASON in r_reason and _old_running(old_conditions) != (
            r_reason, r_msg):
        # CDI's failure-condition event: a pod that cannot get its image is said once,
        # as a Warning, not only on a condition a user may not look at.
        events.append(Event("Warning", r_reason, r_msg))
    if obs.claim_error is not None and obs.claim_error[1] != _old_message(old_conditions):
        events.append(Event("Warning", obs.claim_error[0], obs.claim_error[1]))
    if obs.pvc is not None and o.status(obs.pvc).get("phase") == "Lost" and phase != old.get(
            "phase"):
        events.append(Event("Warning", "ErrClaimLost", f"PVC {pvc_name} lost"))
    return Result(status, events)


def _old_running(conditions: list[Obj]) -> tuple[str, str]:
    c = next((c for c in conditions if c.get("type") == "Running"), {})
    return str(c.get("reason", "")), str(c.get("message", ""))


def _old_message(conditions: list[Obj]) -> str:
    return next((str(c.get("message", "")) for c in conditions if c.get("type") == "Bound"), "")


def status_changed(old: Obj, new: Obj) -> bool:
    return {k: old.get(k) for k in new} != new

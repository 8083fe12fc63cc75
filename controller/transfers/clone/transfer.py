"""Host-assisted clone (strategy `copy`) of one target PVC, both APIs.

Plan, walked from the top each reconcile, every step idempotent:

1. Over (the target server's report said so, it failed for good, or the target is being
   deleted): remove the source pod and client Secret in the source namespace, the
   target's Secret, Service and server pod; then drop the target's finalizer; on
   success mark the target `cloneOf`.
2. Until the source pod exists, nothing touches the source namespace unless: the
   CloneRequest is well-formed; a cross-namespace clone carries a valid clone token for
   exactly this source and target (the webhook's short one is re-signed into the long
   `EXTENDED_TOKEN_ANNOTATION` so a clone that waits does not lose it); the source
   exists, is not being deleted, is Bound and populated; a legacy target fits it; no pod
   can write to it. Each wait is a running condition on the target and an event.
3. The target's upload server in clone mode; once it is Ready, the finalizer on the
   target, then the client Secret and the source pod in the source namespace.
4. A source pod that failed for good, or whose source vanished before it could read
   it, fails the clone with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import annotations as ann
from cdicontract import api, clone, clonetoken, upload
from cdicontract.reasons import is_permanent
from controller.podview import PULL_FAILED_REASON, PodView, failure_reason, pull_failure, view
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Create, Delete, Patch
from controller.runtime.objects import Obj
from controller.transfers import podstate
from controller.transfers.clone import objects, sourcecheck
from controller.transfers.protocol import (
    ClaimView,
    CloneSeen,
    Kind,
    Phases,
    PvcEvent,
    Recheck,
    Step,
    Unsupported,
)
from controller.transfers.upload import objects as uploadobjects
from controller.transfers.upload.authority import Authority

PHASE_CLONE_SCHEDULED = "CloneScheduled"
PHASE_CLONE_IN_PROGRESS = "CloneInProgress"

PHASES = Phases(
    scheduled=PHASE_CLONE_SCHEDULED,
    running=PHASE_CLONE_IN_PROGRESS,
    running_needs_ready=True,
    events={
        PHASE_CLONE_SCHEDULED: ("Normal", "CloneScheduled", "Cloning into {pvc} scheduled"),
        PHASE_CLONE_IN_PROGRESS: ("Normal", "CloneInProgress", "Cloning into {pvc} in progress"),
        api.PHASE_SUCCEEDED: ("Normal", "CloneSucceeded", "Successfully cloned into {pvc}"),
        api.PHASE_FAILED: ("Warning", "CloneFailed", "Cloning into {pvc} failed: {msg}"),
    },
    progress_metric=clone.PROGRESS_METRIC,
    progress_port=upload.UPLOAD_SERVER_METRICS_PORT,
)



def phases_for(source: tuple[str, str], target: tuple[str, str]) -> Phases:
    """PHASES with CDI's DataVolume event messages, which name source and target
    ("Successfully cloned from <ns>/<name> into <ns>/<name>"); for the DataVolume side,
    whose status function fills only {pvc} and {msg}."""
    route = (f"from {source[0]}/{source[1]} into {target[0]}/{target[1]}"
             .replace("{", "{{").replace("}", "}}"))
    return dataclasses.replace(PHASES, events={
        PHASE_CLONE_SCHEDULED: ("Normal", "CloneScheduled", f"Cloning {route} scheduled"),
        PHASE_CLONE_IN_PROGRESS: ("Normal", "CloneInProgress", f"Cloning {route} in progress"),
        api.PHASE_SUCCEEDED: ("Normal", "CloneSucceeded", f"Successfully cloned {route}"),
        api.PHASE_FAILED: ("Warning", "CloneFailed", f"Cloning {route} failed: {{msg}}"),
    })


COMPLETE_MESSAGE = "Clone Complete"
"""CDI's CloneComplete: the running condition's message once the target is written."""
STYLE = podstate.PodStyle(ann.UPLOAD_POD_NAME, COMPLETE_MESSAGE, ready_means_running=False)

# CDI's reasons and messages.
VALIDATION_FAILED = "CloneValidationFailed"
VALIDATION_MESSAGE = "The clone doesn't meet the validation requirements"
WITHOUT_SOURCE = "CloneWithoutSource"
WITHOUT_SOURCE_MESSAGE = "The source pvc {name} doesn't exist"
SOURCE_IN_USE = sourcecheck.SOURCE_IN_USE
TARGET_IN_USE = "UploadTargetInUse"
"""CDI's upload controller makes a clone target's server, and says this."""
INCOMPATIBLE = "ErrIncompatiblePVC"
SUCCEEDED_REASON = "CloneSucceeded"
SUCCEEDED_MESSAGE = "Successfully cloned from {src} into {dst}"
FAILED_REASON = "CloneFailed"
# Ours, where CDI only waits silently.
SOURCE_DELETING = sourcecheck.SOURCE_DELETING
SOURCE_NOT_READY = sourcecheck.SOURCE_NOT_READY

IN_USE_RECHECK_SECONDS = sourcecheck.IN_USE_RECHECK_SECONDS
CLEANUP_RECHECK_SECONDS = 2.0


def _condition(pvc: Obj, reason: str, message: str, *, running: bool = False
               ) -> dict[str, str]:
    want = {ann.CONDITION_RUNNING: "true" if running else "false",
            ann.CONDITION_RUNNING_REASON: reason, ann.CONDITION_RUNNING_MESSAGE: message}
    current = o.annotations(pvc)
    return {k: v for k, v in want.items() if current.get(k) != v}


def _say(pvc: Obj, reason: str, message: str, event_type: str = "Warning") -> list[Step]:
    """The running condition says why the clone waits or stopped; an event when it
    changes (not on every look)."""
    changed = _condition(pvc, reason, message)
    if not changed:
        return []
    return [Patch(kube.PVCS, o.namespace(pvc), o.name(pvc),
                  {"metadata": {"annotations": changed}}),
            PvcEvent(event_type, reason, message)]


def _finalizers(pvc: Obj) -> list[str]:
    return [str(f) for f in o.meta(pvc).get("finalizers") or []]


def _set_finalizers(pvc: Obj, finalizers: list[str]) -> Patch:
    """A merge patch replaces the list: the resourceVersion makes it fail (409) rather
    than drop a finalizer someone else added meanwhile."""
    return Patch(kube.PVCS, o.namespace(pvc), o.name(pvc),
                 {"metadata": {"finalizers": finalizers,
                               "resourceVersion": o.meta(pvc).get("resourceVersion")}})


def authorize(pvc: Obj, source_ns: str, source_name: str, *,
              public_key: rsa.RSAPublicKey | None, private_key: rsa.RSAPrivateKey | None,
              now: datetime | None = None) -> str | dict[str, str]:
    """Why a cross-namespace clone is not authorised, or the annotations to record
    (the long-lived re-signing of a valid short token; {} when nothing to add)."""
    ns, name = o.namespace(pvc), o.name(pvc)
    if source_ns == ns:
        return {}
    if public_key is None:
        raise RuntimeError("clone token key not loaded yet")
    ref = clonetoken.CloneRef(source_ns, source_name, ns, name)
    current = o.annotations(pvc)
    extended = current.get(clone.EXTENDED_TOKEN_ANNOTATION)
    try:
        if extended:
            clonetoken.verify(extended, public_key, ref, now=now)
            return {}
        token = current.get(clone.TOKEN_ANNOTATION)
        if not token:
            return "no clone token"
        clonetoken.verify(token, public_key, ref, now=now)
    except clonetoken.TokenError as exc:
        return str(exc)
    if private_key is None:
        return {}
    return {clone.EXTENDED_TOKEN_ANNOTATION: clonetoken.sign(
        private_key, ref, now=now, lifetime=clonetoken.EXTENDED_LIFETIME)}


def _is_dv_target(pvc: Obj) -> bool:
    owner = o.controller_owner(pvc)
    return owner is not None and owner.get("kind") == api.DATAVOLUME_KIND


SOURCE_DELETED_GRACE_SECONDS = 20.0


def _source_pull(pvc: Obj, v: PodView) -> list[Step]:
    """The source pod's image pull failure on the target PVC, as CDI's source running
    condition (the DataVolume's Running condition shows it); reset once it pulled."""
    current = o.annotations(pvc)
    if v.image_pull_failed:
        reason, message = pull_failure(v, current.get(objects.SOURCE_RUNNING_MESSAGE, ""))
        want = {objects.SOURCE_RUNNING: "false", objects.SOURCE_RUNNING_REASON: reason,
                objects.SOURCE_RUNNING_MESSAGE: message}
    elif current.get(objects.SOURCE_RUNNING_REASON) == PULL_FAILED_REASON:
        want = {objects.SOURCE_RUNNING: "true" if v.running else "false",
                objects.SOURCE_RUNNING_REASON: "Pod is running" if v.running else (
                    v.waiting_reason or podstate.PENDING),
                objects.SOURCE_RUNNING_MESSAGE: "" if v.running else v.waiting_message}
    else:
        return []
    changed = {k: val for k, val in want.items() if current.get(k) != val}
    if not changed:
        return []
    return [Patch(kube.PVCS, o.namespace(pvc), o.name(pvc),
                  {"metadata": {"annotations": changed}})]


def _seconds_since(stamp: object, now: datetime | None) -> float:
    """Seconds from an RFC 3339 timestamp to `now` (0 when unreadable)."""
    if not isinstance(stamp, str):
        return 0.0
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, ((now or datetime.now(UTC)) - then).total_seconds())


class CloneTransfer:
    kind = Kind.CLONE
    phases = PHASES
    exclusive = True
    """Nothing else may write the target while the clone does."""

    def __init__(self, server: uploadobjects.PodSettings,
                 source: objects.SourcePodSettings | None = None,
                 authority: Authority | None = None,
                 key: rsa.RSAPrivateKey | None = None) -> None:
        self.server = server
        self.source = source or objects.SourcePodSettings()
        self.authority = authority
        """The upload CAs, loaded from the controller's namespace before the first
        reconcile."""
        self.key = key
        """The clone-token key (controller/clonekey.py), loaded likewise."""

    def claim_annotations(self, dv: Obj) -> dict[str, str] | Unsupported | None:
        return None  # the DataVolume side makes the target PVC with the annotations

    def targets(self, pvc: Obj) -> bool:
        current = o.annotations(pvc)
        return (ann.CLONE_REQUEST in current
                and current.get(clone.CLONE_TYPE_ANNOTATION, clone.Strategy.COPY)
                == clone.Strategy.COPY)

    def pod_name(self, pvc_name: str) -> str:
        return upload.upload_resource_name(pvc_name)

    def source_of(self, pvc: Obj) -> tuple[str, str] | None:
        return sourcecheck.request(pvc)

    def may_read_source(self, pvc: Obj) -> bool:
        """Whether the target's token lets the controller look at its source namespace
        at all (same namespace: always); the plan says why not."""
        ref = sourcecheck.request(pvc)
        if ref is None:
            return False
        public = self.key.public_key() if self.key is not None else None
        if public is None and ref[0] != o.namespace(pvc):
            return False
        return not isinstance(authorize(pvc, *ref, public_key=public, private_key=None), str)

    # ---- the plan ---------------------------------------------------------------

    def plan(self, seen: ClaimView) -> Sequence[Step]:
        pvc = seen.pvc
        cs = seen.clone or CloneSeen()
        d = podstate.decide(pvc, seen.pod, self.pod_name(o.name(pvc)), seen.wffc, STYLE)
        record = {**o.annotations(pvc), **d.annotations}.get(ann.POD_PHASE)
        if record in (podstate.SUCCEEDED, podstate.FAILED) or o.deleting(pvc):
            return self._finish(seen, cs, d)
        ref = sourcecheck.request(pvc)
        if ref is None:
            value = o.annotations(pvc).get(ann.CLONE_REQUEST, "")
            return _say(pvc, VALIDATION_FAILED,
                        f"{VALIDATION_MESSAGE}: {ann.CLONE_REQUEST} {value!r} is not "
                        "<namespace>/<name>")
        if cs.source_pod is None:
            steps = self._before_source(seen, cs, ref)
            if steps is not None:
                return steps
            if seen.pod is None and seen.users:
                # Another pod has the target: no server writes under it (CDI's check).
                users = ", ".join(f"{o.namespace(pvc)}/{u}" for u in seen.users)
                return _say(pvc, TARGET_IN_USE,
                            f"pod {users} using PersistentVolumeClaim {o.name(pvc)}")
            steps = self._server(seen, d)
            if seen.pod is not None and view(seen.pod).ready and cs.source is not None:
                if objects.FINALIZER not in _finalizers(pvc):
                    # Alone: its resourceVersion must be the one the plan saw; the
                    # update brings the next reconcile, which makes the source's objects.
                    return [_set_finalizers(pvc, [*_finalizers(pvc), objects.FINALIZER])]
                steps += self._start_source(pvc, cs.source, seen)
            return steps
        return [*self._server(seen, d), *self._watch_source(pvc, cs, ref)]

    def _before_source(self, seen: ClaimView, cs: CloneSeen, ref: tuple[str, str]
                       ) -> list[Step] | None:
        """The checks before anything is made; None when the clone may go on."""
        pvc = seen.pvc
        ns, name = o.namespace(pvc), o.name(pvc)
        src_ns, src_name = ref
        public = self.key.public_key() if self.key is not None else None
        verdict = authorize(pvc, src_ns, src_name, public_key=public, private_key=self.key,
                            now=cs.now)
        if isinstance(verdict, str):
            return _say(pvc, VALIDATION_FAILED, f"{VALIDATION_MESSAGE}: {verdict}")
        steps: list[Step] = []
        if verdict:
            steps.append(Patch(kube.PVCS, ns, name, {"metadata": {"annotations": verdict}}))
        source = cs.source
        if source is None:
            return steps + _say(pvc, WITHOUT_SOURCE, WITHOUT_SOURCE_MESSAGE.format(name=src_name))
        wait = sourcecheck.not_ready(source)
        if wait is not None:
            return steps + _say(pvc, wait.reason, wait.message, wait.event_type)
        if not _is_dv_target(pvc):
            why = sourcecheck.incompatible(source, pvc, seen.config)
            if why is not None:
                return steps + _say(pvc, INCOMPATIBLE, why)
        wait = sourcecheck.in_use(source, cs.writers)
        if wait is not None:
            assert wait.recheck is not None
            return [*steps, *_say(pvc, wait.reason, wait.message, wait.event_type),
                    Recheck(wait.recheck)]
        return steps or None

    def _server(self, seen: ClaimView, d: podstate.PodDecision) -> list[Step]:
        """The target's upload server in clone mode (as the upload transfer makes it)."""
        pvc = seen.pvc
        ns = o.namespace(pvc)
        steps: list[Step] = []
        if d.annotations:
            steps.append(Patch(kube.PVCS, ns, o.name(pvc),
                               {"metadata": {"annotations": d.annotations}}))
        if d.waiting_for_consumer:
            return steps
        service_name = upload.upload_service_name(o.name(pvc))
        if not any(o.name(s) == service_name for s in seen.services):
            steps.append(Create(kube.SERVICES, ns, objects.server_service(pvc)))
        if d.create_pod:
            if self.authority is None:
                raise RuntimeError("upload certificate authority not loaded yet")
            steps.append(Create(kube.SECRETS, ns, objects.server_secret(pvc, self.authority)))
            steps.append(Create(kube.PODS, ns, objects.server_pod(pvc, seen.config,
                                                                  self.server)))
        elif d.delete_pod and seen.pod is not None:
            steps.append(Delete(kube.PODS, ns, o.name(seen.pod), o.uid(seen.pod)))
        return steps

    def _start_source(self, pvc: Obj, source: Obj, seen: ClaimView) -> list[Step]:
        """The client Secret and the source pod (the target already has the finalizer
        that cleans them up)."""
        if self.authority is None:
            raise RuntimeError("upload certificate authority not loaded yet")
        src_ns = o.namespace(source)
        steps: list[Step] = []
        pod = objects.source_pod(pvc, source, seen.config, self.source)
        steps.append(Create(kube.SECRETS, src_ns,
                            objects.client_secret(pvc, source, self.authority)))
        steps.append(Create(kube.PODS, src_ns, pod))
        if o.annotations(pvc).get(objects.CLONE_SOURCE_POD_ANNOTATION) != o.name(pod):
            steps.append(Patch(kube.PVCS, o.namespace(pvc), o.name(pvc), {"metadata": {
                "annotations": {objects.CLONE_SOURCE_POD_ANNOTATION: o.name(pod)}}}))
        return steps

    def _watch_source(self, pvc: Obj, cs: CloneSeen, ref: tuple[str, str]) -> list[Step]:
        """The source pod's fate: a permanent failure or a vanished source ends the
        clone; a pod lost as a whole is replaced (after the checks again)."""
        pod = cs.source_pod
        assert pod is not None
        if o.deleting(pod):
            return []
        v = view(pod)
        where = f"{ref[0]}/{ref[1]}"
        latest = v.latest_termination
        if (latest is not None and latest.failed and latest.report is not None
                and is_permanent(latest.report.reason)):
            reason, message = failure_reason(latest)
            return self._fail(pvc, f"the source pod failed: {reason}: {message}")
        # Gone, or being deleted and so refused by the scheduler: it will never run.
        gone = cs.source is None or (o.deleting(cs.source)
                                     and v.unschedulable_message is not None)
        never_started = not v.running and v.phase == podstate.PENDING and latest is None
        if gone and never_started:
            return self._fail(pvc, f"The source pvc {where} was deleted before the clone "
                                   "could read it")
        if never_started and cs.source is not None and o.deleting(cs.source):
            # Scheduled, but a node does not mount a claim being deleted (the kubelet
            # refuses it too): after a grace for a start already under way, it never runs.
            waited = _seconds_since(o.meta(cs.source).get("deletionTimestamp"), cs.now)
            if waited >= SOURCE_DELETED_GRACE_SECONDS:
                return self._fail(pvc, f"The source pvc {where} was deleted before the "
                                       "clone could read it")
            return [Recheck(SOURCE_DELETED_GRACE_SECONDS - waited)]
        if v.phase == podstate.FAILED:
            # Evicted or lost: the next reconcile checks the source again and makes a new one.
            return [Delete(kube.PODS, o.namespace(pod), o.name(pod), o.uid(pod))]
        return _source_pull(pvc, v)

    def _fail(self, pvc: Obj, message: str) -> list[Step]:
        changed = {**_condition(pvc, FAILED_REASON, message),
                   ann.POD_PHASE: podstate.FAILED, ann.POD_READY: "false"}
        return [Patch(kube.PVCS, o.namespace(pvc), o.name(pvc),
                      {"metadata": {"annotations": changed}}),
                PvcEvent("Warning", FAILED_REASON, message)]

    def _finish(self, seen: ClaimView, cs: CloneSeen, d: podstate.PodDecision
                ) -> list[Step]:
        pvc = seen.pvc
        ns, name = o.namespace(pvc), o.name(pvc)
        pod_name = self.pod_name(name)
        steps: list[Step] = []
        ref = sourcecheck.request(pvc)
        record = {**o.annotations(pvc), **d.annotations}.get(ann.POD_PHASE)
        succeeded = (record == podstate.SUCCEEDED and not o.deleting(pvc)
                     and o.annotations(pvc).get(clone.CLONE_OF_ANNOTATION) != "true")
        # The outcome and the mark in one write: a reader never sees one without the other.
        changed = {**d.annotations, **({clone.CLONE_OF_ANNOTATION: "true"} if succeeded else {})}
        if changed:
            steps.append(Patch(kube.PVCS, ns, name, {"metadata": {"annotations": changed}}))
        if d.annotations.get(ann.POD_PHASE) == podstate.FAILED:
            steps.append(PvcEvent("Warning", FAILED_REASON, d.annotations.get(
                ann.CONDITION_RUNNING_MESSAGE, "the clone target's server failed")))
        if succeeded:
            src = f"{ref[0]}/{ref[1]}" if ref is not None else "?"
            steps.append(PvcEvent("Normal", SUCCEEDED_REASON,
                                  SUCCEEDED_MESSAGE.format(src=src, dst=f"{ns}/{name}")))
        src_pod = cs.source_pod
        if src_pod is not None and not o.deleting(src_pod):
            steps.append(Delete(kube.PODS, o.namespace(src_pod), o.name(src_pod),
                                o.uid(src_pod)))
        finalizer = objects.FINALIZER in _finalizers(pvc)
        if ref is not None and finalizer:
            steps.append(Delete(kube.SECRETS, ref[0], clone.client_secret_name(o.uid(pvc))))
        has_service = any(o.name(s) == upload.upload_service_name(name) for s in seen.services)
        if seen.pod is not None or has_service:
            steps.append(Delete(kube.SECRETS, ns, pod_name))
        steps += [Delete(kube.SERVICES, ns, o.name(s), o.uid(s)) for s in seen.services]
        if d.delete_pod and seen.pod is not None:
            steps.append(Delete(kube.PODS, ns, pod_name, o.uid(seen.pod)))
        patched = any(isinstance(x, Patch) and x.resource == kube.PVCS for x in steps)
        if finalizer:
            if src_pod is None and not patched:
                steps.append(_set_finalizers(
                    pvc, [f for f in _finalizers(pvc) if f != objects.FINALIZER]))
            elif src_pod is not None:
                # Its deletion may not route back here (a DataVolume already gone).
                steps.append(Recheck(CLEANUP_RECHECK_SECONDS))
            # else: the patch above brings the next reconcile, which drops it alone.
        return steps

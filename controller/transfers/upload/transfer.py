"""Upload as a transfer: a per-PVC upload server the proxy streams the client's image to.

Plan for one PVC (every step idempotent, walked from the top each reconcile): record the
pod's state in the PVC's annotations (the proxy reads `storage.pod.ready` and
`storage.pod.phase`); while the upload is not over, make the Service, the TLS Secret and
the pod; once it is over (the termination report said so, or it failed for good), delete
Secret, Service and pod, the pod last, so a half-done cleanup is finished next time.
"""

from __future__ import annotations

from cdicontract import annotations as ann
from cdicontract import api, upload
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Action, Create, Delete, Patch
from controller.runtime.objects import Obj
from controller.transfers import podstate, protocol
from controller.transfers.protocol import ClaimView, Kind, Phases, Unsupported
from controller.transfers.upload import objects
from controller.transfers.upload.authority import Authority

PHASE_UPLOAD_SCHEDULED = "UploadScheduled"
PHASE_UPLOAD_READY = "UploadReady"

PHASES = Phases(
    scheduled=PHASE_UPLOAD_SCHEDULED,
    running=PHASE_UPLOAD_READY,
    running_needs_ready=True,
    events={
        PHASE_UPLOAD_SCHEDULED: ("Normal", "UploadScheduled", "Upload into {pvc} scheduled"),
        PHASE_UPLOAD_READY: ("Normal", "UploadReady", "Upload into {pvc} ready"),
        api.PHASE_SUCCEEDED: ("Normal", "UploadSucceeded", "Successfully uploaded into {pvc}"),
        api.PHASE_FAILED: ("Warning", "UploadFailed", "Upload into {pvc} failed: {msg}"),
    },
    progress_metric=upload.UPLOAD_PROGRESS_METRIC,
    progress_port=upload.UPLOAD_SERVER_METRICS_PORT,
)

STYLE = podstate.PodStyle(ann.UPLOAD_POD_NAME, "Upload Complete", ready_means_running=False)


IN_USE = "UploadTargetInUse"


class UploadTransfer:
    kind = Kind.UPLOAD
    phases = PHASES
    exclusive = True

    def __init__(self, settings: objects.PodSettings,
                 authority: Authority | None = None) -> None:
        self.settings = settings
        self.authority = authority
        """Loaded from the controller's namespace before the first reconcile."""

    def claim_annotations(self, dv: Obj) -> dict[str, str] | Unsupported | None:
        if protocol.source_type(dv) != "upload":
            return None
        spec = o.spec(dv)
        # Preallocation and the pod priority class: `propagation`, for every DataVolume.
        return {ann.UPLOAD_TARGET: "", ann.CONTENT_TYPE: str(spec.get("contentType")
                                                              or "kubevirt")}

    def targets(self, pvc: Obj) -> bool:
        return ann.UPLOAD_TARGET in o.annotations(pvc)

    def pod_name(self, pvc_name: str) -> str:
        return upload.upload_resource_name(pvc_name)

    def plan(self, seen: ClaimView) -> list[Action]:
        pvc = seen.pvc
        ns, name = o.namespace(pvc), o.name(pvc)
        pod_name = self.pod_name(name)
        service_name = upload.upload_service_name(name)
        d = podstate.decide(pvc, seen.pod, pod_name, seen.wffc, STYLE)
        actions: list[Action] = []
        if d.annotations:
            actions.append(Patch(kube.PVCS, ns, name,
                                 {"metadata": {"annotations": d.annotations}}))
        record = {**o.annotations(pvc), **d.annotations}.get(ann.POD_PHASE)
        over = record in (podstate.SUCCEEDED, podstate.FAILED) or o.deleting(pvc)
        has_service = any(o.name(s) == service_name for s in seen.services)
        if over:
            if seen.pod is not None or has_service:
                actions.append(Delete(kube.SECRETS, ns, pod_name))
            actions += [Delete(kube.SERVICES, ns, o.name(s), o.uid(s)) for s in seen.services]
            if d.delete_pod and seen.pod is not None:
                actions.append(Delete(kube.PODS, ns, pod_name, o.uid(seen.pod)))
            return actions
        if d.waiting_for_consumer:
            return actions
        if seen.pod is None and seen.users:
            # Another pod has the volume: no server writes under it (CDI's check).
            users = ", ".join(f"{ns}/{u}" for u in seen.users)
            message = f"pod {users} using PersistentVolumeClaim {name}"
            in_use = {ann.CONDITION_RUNNING: "false", ann.CONDITION_RUNNING_REASON: IN_USE,
                      ann.CONDITION_RUNNING_MESSAGE: message}
            current = o.annotations(pvc)
            changed = {k: v for k, v in in_use.items() if current.get(k) != v}
            if changed:
                actions.append(Patch(kube.PVCS, ns, name, {"metadata": {"annotations": changed}}))
            return actions
        if not has_service:
            actions.append(Create(kube.SERVICES, ns, objects.service(pvc)))
        if d.create_pod:
            if self.authority is None:
                raise RuntimeError("upload certificate authority not loaded yet")
            actions.append(Create(kube.SECRETS, ns, objects.secret(pvc, self.authority)))
            actions.append(Create(kube.PODS, ns, objects.pod(pvc, seen.config, self.settings)))
        elif d.delete_pod and seen.pod is not None:
            # Lost as a whole (evicted): the next reconcile makes a new one.
            actions.append(Delete(kube.PODS, ns, pod_name, o.uid(seen.pod)))
        return actions

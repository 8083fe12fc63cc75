"""Import as a transfer: the importer pod on the target PVC, CDI's import phases."""

from __future__ import annotations

from cdicontract import api, envvars
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Action, Create, Delete, Patch
from controller.runtime.objects import Obj
from controller.transfers import podstate, protocol
from controller.transfers.importing import pod, source
from controller.transfers.protocol import ClaimView, Kind, Phases, Unsupported

PHASES = Phases(
    scheduled=api.PHASE_IMPORT_SCHEDULED,
    running=api.PHASE_IMPORT_IN_PROGRESS,
    running_needs_ready=False,
    events={
        api.PHASE_IMPORT_SCHEDULED: ("Normal", "ImportScheduled", "Import into {pvc} scheduled"),
        api.PHASE_IMPORT_IN_PROGRESS: ("Normal", "ImportInProgress",
                                       "Import into {pvc} in progress"),
        api.PHASE_SUCCEEDED: ("Normal", "ImportSucceeded", "Successfully imported into PVC {pvc}"),
        api.PHASE_FAILED: ("Warning", "ImportFailed", "Failed to import into PVC {pvc}: {msg}"),
    },
    progress_metric=envvars.IMPORT_PROGRESS_METRIC,
    progress_port=envvars.METRICS_PORT,
)


class ImportTransfer:
    kind = Kind.IMPORT
    phases = PHASES
    exclusive = False

    def __init__(self, settings: pod.PodSettings) -> None:
        self.settings = settings

    def claim_annotations(self, dv: Obj) -> dict[str, str] | Unsupported | None:
        if protocol.source_type(dv) not in source.IMPORT_SOURCES:
            return None
        return source.pvc_annotations(dv)

    def targets(self, pvc: Obj) -> bool:
        return source.ImportRequest.from_pvc(pvc) is not None

    def pod_name(self, pvc_name: str) -> str:
        return pod.pod_name(pvc_name)

    def plan(self, seen: ClaimView) -> list[Action]:
        pvc = seen.pvc
        req = source.ImportRequest.from_pvc(pvc)
        if req is None:
            return []
        ns, name = o.namespace(pvc), o.name(pvc)
        pod_name = pod.pod_name(name)
        d = podstate.decide(pvc, seen.pod, pod_name, seen.wffc,
                            restart_limit=seen.config.pod_restart_limit)
        actions: list[Action] = []
        if d.annotations:
            actions.append(Patch(kube.PVCS, ns, name,
                                 {"metadata": {"annotations": d.annotations}}))
        if d.create_pod:
            actions.append(Create(kube.PODS, ns,
                                  pod.build(pvc, req, seen.config, self.settings)))
        if d.delete_pod and seen.pod is not None:
            actions.append(Delete(kube.PODS, ns, pod_name, o.uid(seen.pod)))
        return actions

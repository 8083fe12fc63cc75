"""Import as a transfer: the importer pod on the target PVC, CDI's import phases."""

from __future__ import annotations

from cdicontract import api, envvars
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import Create, Delete, Patch
from controller.runtime.objects import Obj
from controller.transfers import podstate, protocol
from controller.transfers.importing import pod, proxycert, proxysecret, scratch, source
from controller.transfers.protocol import ClaimView, Kind, Phases, Step, Unsupported

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

    def plan(self, seen: ClaimView) -> list[Step]:
        pvc = seen.pvc
        req = source.ImportRequest.from_pvc(pvc)
        if req is None:
            return []
        ns, name = o.namespace(pvc), o.name(pvc)
        pod_name = pod.pod_name(name)
        d = podstate.decide(pvc, seen.pod, pod_name, seen.wffc,
                            restart_limit=seen.config.pod_restart_limit)
        annotations = dict(d.annotations)
        # The scratch PVC, when the PVC asks for one, before the pod that mounts it.
        scratch_steps, blocked = scratch.plan(pvc, seen.scratch, seen.pod, seen.config)
        create_pod = d.create_pod and blocked is None
        if d.create_pod and blocked is not None:
            annotations.update(podstate.changed_running(pvc, blocked.reason, blocked.message))
        steps: list[Step] = []
        if annotations:
            steps.append(Patch(kube.PVCS, ns, name,
                               {"metadata": {"annotations": annotations}}))
        steps += [s for s in scratch_steps if not isinstance(s, Delete)]
        if create_pod:
            if (proxy := proxysecret.build(pvc, seen.config)) is not None:
                steps.append(Create(kube.SECRETS, ns, proxy))
            if (ca := proxycert.copy(pvc, seen.config, self.settings.cdi_namespace)) is not None:
                steps.append(ca)
            steps.append(Create(kube.PODS, ns,
                                pod.build(pvc, req, seen.config, self.settings)))
        if d.delete_pod and seen.pod is not None:
            steps.append(Delete(kube.PODS, ns, pod_name, o.uid(seen.pod)))
            # A Secret left by a proxy configured earlier goes with the PVC (its owner).
            if proxysecret.build(pvc, seen.config) is not None:
                steps.append(Delete(kube.SECRETS, ns, proxysecret.secret_name(name)))
            if seen.config.trusted_ca_proxy:
                steps.append(Delete(kube.CONFIGMAPS, ns, proxycert.configmap_name(name)))
        steps += [s for s in scratch_steps if isinstance(s, Delete)]
        return steps

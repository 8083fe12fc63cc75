"""Kubernetes objects for the pure tests, shaped as the API server returns them."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def dv(name: str = "dv1", *, source: Obj | None = None, storage: Obj | None = None,
       pvc: Obj | None = None, annotations: dict[str, str] | None = None,
       status: Obj | None = None, **spec: Any) -> Obj:
    body: Obj = {"source": source if source is not None else {"blank": {}}}
    if storage is not None:
        body["storage"] = storage
    if pvc is not None:
        body["pvc"] = pvc
    if storage is None and pvc is None:
        body["storage"] = {"resources": {"requests": {"storage": "1Gi"}}}
    body.update(spec)
    out: Obj = {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": name, "namespace": "ns", "uid": "dv-uid",
                     "annotations": annotations or {}},
        "spec": body,
    }
    if status is not None:
        out["status"] = status
    return out


def storage_class(name: str, *, default: bool = False, virt_default: bool = False,
                  wffc: bool = False, created: str = "2024-01-01T00:00:00Z") -> Obj:
    ann = {}
    if default:
        ann["storageclass.kubernetes.io/is-default-class"] = "true"
    if virt_default:
        ann["storageclass.kubevirt.io/is-default-virt-class"] = "true"
    return {
        "metadata": {"name": name, "annotations": ann, "creationTimestamp": created},
        "provisioner": "local.cdi-py",
        "volumeBindingMode": "WaitForFirstConsumer" if wffc else "Immediate",
    }


def pvc(name: str = "dv1", *, annotations: dict[str, str] | None = None, phase: str = "Bound",
        mode: str = "Filesystem", size: str = "1Gi", sc: str = "local") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "ns", "uid": "pvc-uid",
                     "annotations": annotations or {}},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": mode, "storageClassName": sc,
                 "resources": {"requests": {"storage": size}}},
        "status": {"phase": phase},
    }


def pod(*, phase: str = "Running", state: Obj | None = None, last: Obj | None = None,
        restarts: int = 0, ip: str = "10.0.0.5", conditions: list[Obj] | None = None) -> Obj:
    cs: Obj = {"name": "importer", "restartCount": restarts,
               "state": state if state is not None else {"running": {}}}
    if last is not None:
        cs["lastState"] = last
    return {
        "metadata": {"name": "importer-dv1", "namespace": "ns", "uid": "pod-uid"},
        "status": {"phase": phase, "podIP": ip, "containerStatuses": [cs],
                   "conditions": conditions or []},
    }


def terminated(exit_code: int, message: str = "", reason: str = "Error") -> Obj:
    return {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}

"""Pure decisions of `cdictl upload` about what it observed (virtctl's rules, and messages).

Each function takes the JSON of the objects as the API server returned them and answers:
may we use this PVC, is the upload server ready, is the processing done, did an event say
that waiting is pointless. No I/O here; `upload` does the polling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from cdicontract import annotations as keys
from cdicontract import api
from cdicontract.upload import parse_bool

PHASE_UPLOAD_READY = "UploadReady"
PHASE_PENDING_POPULATION = "PendingPopulation"
POD_SUCCEEDED = "Succeeded"
POD_FAILED = "Failed"
DELETE_AFTER_COMPLETION = keys.PREFIX + "storage.deleteAfterCompletion"
USE_POPULATOR = keys.PREFIX + "storage.usePopulator"
PVC_PRIME_NAME = keys.PREFIX + "storage.populator.pvcPrime"
PROVISIONING_FAILED = "ProvisioningFailed"
ERR_CLAIM_NOT_VALID = "ErrClaimNotValid"
OPTIMISTIC_LOCK_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and "
    "try again")


class Refused(Exception):
    """The target cannot take an upload; the message is virtctl's."""


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _namespace(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace", ""))


@dataclass(frozen=True)
class PrimeLookup:
    """The DataVolume uses a populator: the upload goes to this PVC (the "PVC prime")."""

    name: str


def datavolume_claim(pvc: dict[str, Any], dv: dict[str, Any] | None,
                     name: str) -> PrimeLookup | None:
    """For `dv` uploads onto an existing PVC: None to go on with `pvc`, the PVC prime to
    look up instead, or Refused."""
    ns = _namespace(pvc)
    ann = _annotations(pvc)
    if dv is None:
        if (ann.get(DELETE_AFTER_COMPLETION) == "true"
                and ann.get(keys.POD_PHASE) == POD_SUCCEEDED):
            raise Refused("DataVolume already garbage-collected: Assuming PVC "
                          f"{ns}/{name} is successfully populated")
        raise Refused(f"No DataVolume is associated with the existing PVC {ns}/{name}")
    if _annotations(dv).get(USE_POPULATOR) == "true":
        if pvc.get("status", {}).get("phase") == "Bound":
            raise Refused(f"PVC {name} already successfully populated")
        prime = ann.get(PVC_PRIME_NAME)
        if prime is None:
            raise Refused(f"Unable to get PVC Prime name from PVC {ns}/{name}")
        return PrimeLookup(prime)
    return None


def check_existing_pvc(pvc: dict[str, Any], name: str, *, no_create: bool,
                       archive: bool) -> None:
    """May an existing PVC take the upload? Refused (virtctl's message) when not."""
    ann = _annotations(pvc)
    if ann.get(keys.POD_PHASE) == POD_SUCCEEDED:
        raise Refused(f"PVC {name} already successfully imported/cloned/updated")
    if not no_create and keys.UPLOAD_TARGET not in ann:
        raise Refused(f"PVC {name} not available for upload")
    if archive and ann.get(keys.CONTENT_TYPE) != "archive":
        raise Refused(f"PVC {name} doesn't have archive contentType annotation")


def needs_upload_annotation(pvc: dict[str, Any]) -> bool:
    """virtctl marks an existing PVC (with --no-create) as an upload target itself."""
    return keys.UPLOAD_TARGET not in _annotations(pvc)


class Wait(Enum):
    READY = "ready"
    WAITING = "waiting"


def datavolume_ready(dv: dict[str, Any], *, force_bind: bool) -> Wait:
    """Is the DataVolume's upload server ready? Refused when it never will be by waiting."""
    phase = dv.get("status", {}).get("phase", "")
    if phase in (api.PHASE_WAIT_FOR_FIRST_CONSUMER, PHASE_PENDING_POPULATION) and not force_bind:
        raise Refused(f"cannot upload to DataVolume in {phase} phase, make sure the PVC is "
                      "Bound, or use force-bind flag")
    return Wait.READY if phase == PHASE_UPLOAD_READY else Wait.WAITING


def pvc_ready(pvc: dict[str, Any]) -> Wait:
    """The controller sets `storage.pod.ready` once the upload server takes data."""
    ready = parse_bool(_annotations(pvc).get(keys.POD_READY))
    return Wait.READY if ready else Wait.WAITING


def event_error(events: Iterable[dict[str, Any]], *, pvc_uid: str | None,
                dv_uid: str | None) -> str | None:
    """virtctl's two events that mean waiting is pointless, as its error message."""
    for event in events:
        involved = event.get("involvedObject", {})
        kind, uid = involved.get("kind"), involved.get("uid")
        reason, message = event.get("reason"), str(event.get("message", ""))
        if (pvc_uid and kind == "PersistentVolumeClaim" and uid == pvc_uid
                and reason == PROVISIONING_FAILED and OPTIMISTIC_LOCK_MESSAGE not in message):
            return f"Provisioning failed: {message}"
        if dv_uid and kind == "DataVolume" and uid == dv_uid and reason == ERR_CLAIM_NOT_VALID:
            return f"Claim not valid: {message}"
    return None


class Processing(Enum):
    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"


def processing(pvc: dict[str, Any], dv: dict[str, Any] | None) -> tuple[Processing, str]:
    """After the bytes are sent: done when the PVC's pod phase is Succeeded (virtctl), or
    the DataVolume's phase.

    Beyond virtctl, which waits up to 24 h whatever happens: a DataVolume in phase Failed
    (or a pod phase Failed) is the end, with the controller's reason.
    """
    if _annotations(pvc).get(keys.POD_PHASE) == POD_SUCCEEDED:
        return Processing.DONE, ""
    if dv is not None and dv.get("status", {}).get("phase") == api.PHASE_SUCCEEDED:
        return Processing.DONE, ""
    if dv is not None and dv.get("status", {}).get("phase") == api.PHASE_FAILED:
        for cond in dv.get("status", {}).get("conditions", []):
            if cond.get("type") == "Running" and cond.get("message"):
                return Processing.FAILED, str(cond["message"])
        return Processing.FAILED, f"DataVolume {_name(dv)} failed"
    if _annotations(pvc).get(keys.POD_PHASE) == POD_FAILED:
        msg = _annotations(pvc).get(keys.CONDITION_RUNNING_MESSAGE) or "upload pod failed"
        return Processing.FAILED, msg
    return Processing.RUNNING, ""


def proxy_url_from_config(config: dict[str, Any]) -> str | None:
    """CDIConfig's override first, then the URL the controller published (virtctl)."""
    override = config.get("spec", {}).get("uploadProxyURLOverride")
    if override is not None:
        return str(override)
    status = config.get("status", {}).get("uploadProxyURL")
    return None if status is None else str(status)

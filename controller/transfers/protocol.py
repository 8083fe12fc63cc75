"""What every transfer kind gives the controller: one protocol, planned purely.

A transfer says which DataVolumes it handles and the claim annotations it needs, which
PVCs are its targets, and, from what the controller observed about one PVC, the ordered
list of idempotent actions that moves the world one step on (`plan`). Every reconcile
plans from the top again; the executor applies the actions. Its `Phases` say what the
DataVolume reports on the way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from cdicontract import annotations as ann
from cdicontract import api
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.actions import Action
from controller.runtime.objects import Obj


class Kind(StrEnum):
    """The value of `TRANSFER_LABEL` on a transfer's pods, Services and Secrets."""

    IMPORT = "import"
    UPLOAD = "upload"
    CLONE = "clone"


@dataclass(frozen=True)
class Unsupported:
    """A DataVolume source the transfer recognises but cannot carry out."""

    kind: str
    message: str


EventSpec = tuple[str, str, str]
"""(type, reason, message template with {pvc} and {msg})."""


@dataclass(frozen=True)
class Phases:
    """The DataVolume phases and events of one transfer kind."""

    scheduled: str
    running: str
    running_needs_ready: bool
    """Upload: `running` (UploadReady) only while the PVC records the pod Ready (what the
    proxy reads). Import: `running` (ImportInProgress) once the container has started."""
    events: Mapping[str, EventSpec]
    progress_metric: str
    progress_port: int


@dataclass(frozen=True)
class PvcEvent:
    """A plan's request for an event on the target PVC (emitted after its actions)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Recheck:
    """A plan's request to look at the PVC again after `seconds` (what is waited for is
    not watched, e.g. the users' pods)."""

    seconds: float


Step = Action | PvcEvent | Recheck
"""What a plan returns: actions for the executor, events and rechecks for the reconciler."""


@dataclass(frozen=True)
class CloneSeen:
    """What the clone transfer needs beyond the target: its source, in another namespace
    or the same one (all from the caches, `writers` listed only when needed)."""

    source: Obj | None = None
    """The source PVC (None: it does not exist, or the CloneRequest is malformed)."""
    source_pod: Obj | None = None
    """The cloner pod in the source namespace, found by owner label and name."""
    writers: tuple[str, ...] = ()
    """Live pods in the source namespace that mount the source PVC writable."""
    now: datetime | None = None
    """The clock, for token checks and signing (None: the real clock)."""


@dataclass(frozen=True)
class ClaimView:
    """What the controller observed about one target PVC (from its caches)."""

    pvc: Obj
    pod: Obj | None
    """This transfer's pod for the PVC, found by owner label (or, for pods made before
    the labels, by name and owner reference)."""
    wffc: bool
    config: EffectiveConfig
    services: tuple[Obj, ...] = field(default_factory=tuple)
    users: tuple[str, ...] = ()
    """Other live pods that use the PVC (looked up only for an `exclusive` transfer that
    has no pod yet): writing under them would corrupt what they read."""
    clone: CloneSeen | None = None
    """Only for the clone transfer."""
    scratch: Obj | None = None
    """The PVC named `<pvc>-scratch`, if any (only for the import transfer)."""


class Transfer(Protocol):
    kind: Kind
    phases: Phases
    exclusive: bool
    """Its pod must be the PVC's only user (CDI's UploadTargetInUse check)."""

    def claim_annotations(self, dv: Obj) -> dict[str, str] | Unsupported | None:
        """Annotations the DataVolume's PVC carries for this transfer; None: not mine."""

    def targets(self, pvc: Obj) -> bool:
        """Whether `pvc` (of either API) is this transfer's target."""

    def pod_name(self, pvc_name: str) -> str: ...

    def plan(self, seen: ClaimView) -> Sequence[Step]:
        """The ordered, idempotent actions for one PVC (pure), with the events to record
        and when to look again."""


def source_type(dv: Obj) -> str:
    """The one key set under spec.source ("" when none)."""
    src = o.get_path(dv, "spec", "source") or {}
    keys = [k for k, v in src.items() if v is not None] if isinstance(src, dict) else []
    if not keys and o.get_path(dv, "spec", "sourceRef"):
        return "sourceRef"
    return keys[0] if len(keys) == 1 else ""


def pods_using(pvc: Obj, pods: list[Obj]) -> tuple[str, ...]:
    """Names of the live pods among `pods` that mount `pvc` (CDI's GetPodsUsingPVCs),
    leaving out the PVC's own transfer pods (a listing can be ahead of the cache)."""
    ns, name, owner = o.namespace(pvc), o.name(pvc), owner_uid(pvc)
    return tuple(sorted(
        o.name(p) for p in pods
        if o.namespace(p) == ns
        and o.labels(p).get(ann.OWNER_UID_LABEL) != owner
        and o.status(p).get("phase") not in ("Succeeded", "Failed")
        and any(o.get_path(v, "persistentVolumeClaim", "claimName") == name
                for v in o.spec(p).get("volumes") or [])))


def owner_uid(pvc: Obj) -> str:
    """The UID a transfer's objects are labelled with: the DataVolume's, or the PVC's
    when it is a bare PVC of the legacy API."""
    ref = o.controller_owner(pvc)
    if ref is not None and ref.get("kind") == api.DATAVOLUME_KIND and ref.get("uid"):
        return str(ref["uid"])
    return o.uid(pvc)


def owner_labels(pvc: Obj, kind: Kind) -> dict[str, str]:
    return {ann.OWNER_UID_LABEL: owner_uid(pvc), ann.TRANSFER_LABEL: str(kind)}


def is_transfer_object(obj: Obj, pvc: Obj, kind: Kind) -> bool:
    """`obj` belongs to `pvc`'s transfer of `kind`: by label, else by owner reference."""
    labels = o.labels(obj)
    if ann.OWNER_UID_LABEL in labels:
        return (labels.get(ann.OWNER_UID_LABEL) == owner_uid(pvc)
                and labels.get(ann.TRANSFER_LABEL) == str(kind))
    return o.is_owned_by(obj, pvc)

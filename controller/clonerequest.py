"""What a clone DataVolume's target PVC is, decided purely from what the controller sees.

In order, as CDI's clone DataVolume controller does before it creates anything:
1. Authorization: a cross-namespace clone needs the admission webhook's token on the
   DataVolume, verified for exactly this source and target (`CloneValidationFailed`
   otherwise); same-namespace clones need none. It is verified at the DataVolume's first
   reconcile, whether or not the source exists yet (`authorize`, against the source the
   token names: `token_source`), and its long-lived re-signing is then recorded on the
   DataVolume (`EXTENDED_TOKEN_ANNOTATION`), which is what is checked from then on (as
   CDI's ensureExtendedTokenDV): a golden image that appears after the short token's
   five minutes is still cloned. The target PVC carries its own re-signing.
2. Content types must match (`CloneValidationFailed`).
3. Sizes (CDI's detectCloneSize and ValidateRequestedCloneSize): a target without a
   size takes the source's (status.capacity, else its request; a snapshot's restoreSize),
   then `claims.claim_spec` grows a Filesystem target by the filesystem overhead; a target
   asking for less than the source is refused (`ErrIncompatiblePVC`).
4. Strategy: `strategy.choose` from the target class's StorageProfile, the CDIConfig and
   the VolumeSnapshotClasses; a fallback to `copy` is recorded on the PVC and as an event.
Nothing is created for a refusal: the caller only reports it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import annotations as ann
from cdicontract import clone, clonetoken, sizes
from controller import claims, clonesource, datasources
from controller.cdiconfig import EffectiveConfig
from controller.clonesource import PVC, Source
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.clone import strategy

CLONE_VALIDATION_FAILED = "CloneValidationFailed"
ERR_INCOMPATIBLE_PVC = "ErrIncompatiblePVC"
NO_PROVISIONER_MATCH = "NoProvisionerMatch"
KUBEVIRT = "kubevirt"


@dataclass(frozen=True)
class Refusal:
    """The clone cannot go ahead as asked; the DataVolume stays Pending and says why."""

    reason: str
    message: str


@dataclass(frozen=True)
class Target:
    """The target PVC to create (for `snapshot`: once its VolumeSnapshot is ready)."""

    strategy: clone.Strategy
    pvc: Obj
    """The DataVolume's PVC with the clone annotations; for csi-clone/snapshot the caller
    adds the dataSource with F's builders."""
    fallback: tuple[str, str] | None = None
    """(event reason, message) when `copy` was chosen instead of the profile's strategy."""
    annotations: dict[str, str] = field(default_factory=dict)
    snapshot_class: str = ""
    """For `snapshot` from a PVC: the VolumeSnapshotClass to use."""


@dataclass(frozen=True)
class World:
    """The cluster state a clone target depends on (from the controller's caches)."""

    storage_classes: Sequence[Obj]
    profiles: Mapping[str, Obj]
    config: EffectiveConfig
    snapshot_classes: Sequence[Obj] = ()
    csi_drivers: frozenset[str] = frozenset()
    """Names of the cluster's CSIDrivers: only their classes can clone smartly."""


def validation_failed(why: str) -> Refusal:
    return Refusal(CLONE_VALIDATION_FAILED,
                   f"The clone doesn't meet the validation requirements: {why}")


def cross_namespace(dv: Obj, source: Source) -> bool:
    return source.namespace != o.namespace(dv)


def _ref(dv: Obj, source: Source, *, bound: bool = False) -> clonetoken.CloneRef:
    """What a token on `dv` must approve; `bound`: for this DataVolume object alone (its
    UID), as the long-lived token recorded on it is, so a copy onto a new DataVolume of
    the same name does not verify."""
    return clonetoken.CloneRef(source.namespace, source.name, o.namespace(dv), o.name(dv),
                               source.kind, o.uid(dv) if bound else "")


def token_source(dv: Obj, datasource: Obj | None) -> Source | None:
    """The source the DataVolume's token names, known before that source exists: its
    `source.pvc`/`source.snapshot`, else what its DataSource's spec points at (Ready or
    not; the webhook signed the token for that). None: no DataSource to say (the
    DataVolume waits for it, `clonesource.resolve` says why)."""
    src = clonesource.direct(dv)
    if src is not None:
        return src
    if datasource is None:
        return None
    named = datasources.source_of(datasource)
    return Source(*named) if named is not None else None


def check_token(dv: Obj, source: Source, public_key: rsa.RSAPublicKey | None, *,
                now: datetime | None = None) -> Refusal | None:
    """None when the DataVolume may clone `source` (same namespace, or a valid token).

    The controller's long-lived token on the DataVolume, once there, is the one checked:
    a forged or foreign one is refused even beside a valid short one."""
    if not cross_namespace(dv, source):
        return None
    current = o.annotations(dv)
    extended = current.get(clone.EXTENDED_TOKEN_ANNOTATION)
    token = extended or current.get(clone.TOKEN_ANNOTATION)
    if not token:
        return validation_failed("no clone token")
    if public_key is None:
        return validation_failed("the controller has no clone token key yet")
    try:
        clonetoken.verify(token, public_key, _ref(dv, source, bound=bool(extended)), now=now)
    except clonetoken.TokenError as exc:
        return validation_failed(str(exc))
    return None


def authorize(dv: Obj, source: Source, key: rsa.RSAPrivateKey | None, *,
              now: datetime | None = None) -> Refusal | dict[str, str]:
    """Whether the DataVolume may clone `source`, and the annotations to record on it:
    the long-lived re-signing of a valid short token ({} when it is there already or
    the clone stays in its namespace)."""
    refusal = check_token(dv, source, key.public_key() if key is not None else None, now=now)
    if refusal is not None:
        return refusal
    if (key is None or not cross_namespace(dv, source)
            or clone.EXTENDED_TOKEN_ANNOTATION in o.annotations(dv)):
        return {}
    return {clone.EXTENDED_TOKEN_ANNOTATION: clonetoken.sign(
        key, _ref(dv, source, bound=True), now=now, lifetime=clonetoken.EXTENDED_LIFETIME)}


def extended_token(key: rsa.RSAPrivateKey, dv: Obj, source: Source, *,
                   now: datetime | None = None) -> str:
    return clonetoken.sign(key, _ref(dv, source), now=now,
                           lifetime=clonetoken.EXTENDED_LIFETIME)


def content_type(obj: Obj, *, dv: bool) -> str:
    if dv:
        return str(o.spec(obj).get("contentType") or KUBEVIRT)
    return o.annotations(obj).get(ann.CONTENT_TYPE) or KUBEVIRT


def source_size(source: Obj, kind: str) -> int | None:
    """Bytes of the source: a PVC's capacity (else its request), a snapshot's restoreSize."""
    if kind == PVC:
        text = (o.get_path(source, "status", "capacity", "storage")
                or o.get_path(source, "spec", "resources", "requests", "storage"))
    else:
        text = o.get_path(source, "status", "restoreSize")
    if text is None:
        return None
    try:
        return sizes.parse_quantity(text)
    except sizes.SizeError:
        return None


def source_request(source: Obj, kind: str) -> int | None:
    """What CDI compares the target with: the source PVC's request (restoreSize)."""
    if kind == PVC:
        text = o.get_path(source, "spec", "resources", "requests", "storage")
        if text is not None:
            try:
                return sizes.parse_quantity(text)
            except sizes.SizeError:
                return None
    return source_size(source, kind)


def _claim_key(dv: Obj) -> str:
    return "pvc" if o.spec(dv).get("pvc") is not None else "storage"


def sized_dv(dv: Obj, source: Obj, kind: str) -> Obj | Refusal:
    """`dv` with a target size: its own (checked against the source), else the source's."""
    spec_key = _claim_key(dv)
    claim = o.spec(dv).get(spec_key)
    if not isinstance(claim, dict):
        return Refusal("ErrClaimNotValid", "either spec.pvc or spec.storage is required")
    wanted_text = o.get_path(claim, "resources", "requests", "storage")
    src_request = source_request(source, kind)
    if wanted_text is not None:
        try:
            wanted = sizes.parse_quantity(wanted_text)
        except sizes.SizeError as exc:
            return Refusal("ErrClaimNotValid", str(exc))
        if src_request is not None and wanted < src_request:
            return Refusal(ERR_INCOMPATIBLE_PVC,
                           "target resources requests storage size is smaller than the "
                           f"source {wanted} < {src_request}")
        return dv
    size = source_size(source, kind)
    if size is None:
        return Refusal(ERR_INCOMPATIBLE_PVC, "the source's size is not known yet")
    out = copy.deepcopy(dv)
    new_claim = o.spec(out)[spec_key]
    new_claim.setdefault("resources", {}).setdefault("requests", {})["storage"] = (
        sizes.format_quantity(size))
    return out


def _class(world: World, name: object) -> Obj | None:
    return next((c for c in world.storage_classes if o.name(c) == name), None) if name else None


def _choose(dv: Obj, source: Source, source_obj: Obj, claim: Obj, world: World, *,
            snapshot_content: Obj | None) -> strategy.Choice | Refusal:
    class_name = claim.get("storageClassName")
    choice = strategy.choose(
        source={"kind": source.kind, **source_obj},
        target_class=_class(world, class_name),
        target_volume_mode=claims.volume_mode({"spec": claim}),
        profile=world.profiles.get(str(class_name)) if class_name else None,
        snapshot_classes=world.snapshot_classes,
        same_namespace=not cross_namespace(dv, source),
        csi_drivers=world.csi_drivers,
        source_class=_class(world, o.spec(source_obj).get("storageClassName")),
        target_size=o.get_path(claim, "resources", "requests", "storage"),
        snapshot_content=snapshot_content)
    if source.kind != PVC and choice.strategy == clone.Strategy.COPY:
        # No host-assisted copy from a VolumeSnapshot (CDI restores a temporary PVC first;
        # we do not): only its own driver can restore it, in its namespace.
        return Refusal(choice.fallback_reason or NO_PROVISIONER_MATCH,
                       "The snapshot cannot be restored into this target: "
                       f"{choice.fallback_message or 'no matching driver'}")
    return choice


def target(dv: Obj, source: Source, source_obj: Obj, world: World, *,
           key: rsa.RSAPrivateKey | None, now: datetime | None = None,
           snapshot_content: Obj | None = None) -> Target | Refusal:
    """The target PVC for `dv` cloning `source_obj`, or why there is none."""
    refusal = check_token(dv, source, key.public_key() if key is not None else None, now=now)
    if refusal is not None:
        return refusal
    want_ct = content_type(dv, dv=True)
    if source.kind == PVC:
        have_ct = content_type(source_obj, dv=False)
        if have_ct != want_ct:
            return validation_failed(f"Source contentType ({have_ct}) and target contentType"
                                     f" ({want_ct}) do not match")
    sized = sized_dv(dv, source_obj, source.kind)
    if isinstance(sized, Refusal):
        return sized
    claim = claims.claim_spec(sized, list(world.storage_classes), dict(world.profiles),
                              world.config)
    if isinstance(claim, claims.ClaimError):
        return Refusal(claim.reason, claim.message)
    choice = _choose(dv, source, source_obj, claim, world,
                     snapshot_content=snapshot_content)
    if isinstance(choice, Refusal):
        return choice
    annotations = {
        clone.CLONE_TYPE_ANNOTATION: str(choice.strategy),
        ann.CONTENT_TYPE: want_ct,
    }
    if choice.strategy == clone.Strategy.COPY:
        # Only a host-assisted target is the clone transfer's (C1) to fill; a csi-clone or
        # snapshot target is filled by the storage and must not get a source pod.
        annotations[clone.CLONE_REQUEST_ANNOTATION] = f"{source.namespace}/{source.name}"
    fallback = None
    if choice.fallback_reason:
        annotations[clone.FALLBACK_REASON_ANNOTATION] = choice.fallback_message
        fallback = (choice.fallback_reason, choice.fallback_message)
    if cross_namespace(dv, source) and key is not None:
        annotations[clone.EXTENDED_TOKEN_ANNOTATION] = extended_token(key, dv, source, now=now)
    pvc = claims.build_pvc(dv, claim, annotations, preallocation=world.config.preallocation)
    return Target(choice.strategy, pvc, fallback, annotations, choice.snapshot_class)

"""Clone authorization decisions, pure: what is cloned, which access reviews decide it,
what the denial says and how the token goes onto the object.

As CDI (`authorize.go`, `authorize_utils.go` in its API module): a user may clone a PVC
from another namespace when a SubjectAccessReview says they may `create`
`datavolumes/source` (group `cdi.kubevirt.io`) there, or else `create` `pods` there; a
VolumeSnapshot when they may `create` `datavolumes/source`, or else both `create` `pods`
and `create` PVCs there. The reviews carry the admission request's userInfo unchanged
(username, uid, groups, extra), so a ServiceAccount is checked as
`system:serviceaccount:<ns>:<name>` with its own groups. A clone within one namespace
needs nothing beyond the right to create the DataVolume, which the API server has already
checked. The I/O (DataSource lookups, the reviews) is `controller/clonemutate.py`'s.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cdicontract import api, clone, clonetoken
from controller.runtime.objects import Obj

GROUP = api.GROUP
CLONE_SOURCE_SUBRESOURCE = "source"
DATASOURCE_KIND = api.DATASOURCE_KIND
PRE_POPULATED_ANNOTATION = "cdi.kubevirt.io/storage.prePopulated"
CHECK_STATIC_VOLUME_ANNOTATION = "cdi.kubevirt.io/storage.checkStaticVolume"
DENIAL_FIELD = "spec.source.PVC.namespace"  # CDI names this field for every clone denial


class BadRequest(Exception):
    """The object cannot be authorised as it stands (its message is the denial)."""


@dataclass(frozen=True)
class Source:
    """What is read: a PVC or a VolumeSnapshot (clonetoken's kinds)."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class DataSourceRef:
    """A `sourceRef` to a DataSource, resolved from the API before authorising."""

    namespace: str
    name: str


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: Obj) -> UserInfo:
        info = request.get("userInfo") or {}
        extra = info.get("extra") or {}
        return cls(username=str(info.get("username", "")), uid=str(info.get("uid", "")),
                   groups=tuple(str(g) for g in info.get("groups") or ()),
                   extra={str(k): [str(v) for v in vs] for k, vs in extra.items()})


def _ref(section: Any, kind: str, default_namespace: str) -> Source | None:
    if not isinstance(section, dict):
        return None
    return Source(kind, str(section.get("namespace") or default_namespace),
                  str(section.get("name") or ""))


def dv_source(dv: Obj) -> Source | DataSourceRef | None:
    """The DataVolume's clone source (namespace defaulted to the DV's), None when not a clone."""
    meta, spec = dv.get("metadata") or {}, dv.get("spec") or {}
    ns = str(meta.get("namespace") or "")
    source = spec.get("source")
    if isinstance(source, dict):
        return (_ref(source.get("pvc"), clonetoken.KIND_PVC, ns)
                or _ref(source.get("snapshot"), clonetoken.KIND_SNAPSHOT, ns))
    ref = spec.get("sourceRef")
    if isinstance(ref, dict) and ref.get("kind") == DATASOURCE_KIND:
        return DataSourceRef(str(ref.get("namespace") or ns), str(ref.get("name") or ""))
    return None


def datasource_source(ds: Obj) -> Source | None:
    """What a DataSource points at; a source without namespace is in the DataSource's.

    A DataSource that refers to another DataSource has its resolved source in its status
    (CDI). None: it points at nothing yet (no clone, so no token; the controller makes the
    DataVolume wait for it).
    """
    ns = str((ds.get("metadata") or {}).get("namespace") or "")
    source = (ds.get("spec") or {}).get("source") or {}
    if isinstance(source, dict) and source.get("dataSource"):
        source = (ds.get("status") or {}).get("source") or {}
    if not isinstance(source, dict):
        return None
    return (_ref(source.get("pvc"), clonetoken.KIND_PVC, ns)
            or _ref(source.get("snapshot"), clonetoken.KIND_SNAPSHOT, ns))


def pvc_source(pvc: Obj) -> Source | None:
    """The legacy `k8s.io/CloneRequest: <ns>/<name>` source of a PVC; BadRequest when malformed."""
    value = ((pvc.get("metadata") or {}).get("annotations") or {}).get(
        clone.CLONE_REQUEST_ANNOTATION)
    if value is None:
        return None
    ns, sep, name = str(value).partition("/")
    if not sep or not ns or not name or "/" in name:
        raise BadRequest(f"annotation {clone.CLONE_REQUEST_ANNOTATION} must be "
                         f"<namespace>/<name>, got {str(value)[:100]!r}")
    return Source(clonetoken.KIND_PVC, ns, name)


def owned_by_datavolume(obj: Obj) -> bool:
    """A DataVolume's own PVC: authorised through its DataVolume, left alone here."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return any(isinstance(r, dict) and r.get("kind") == "DataVolume"
               and str(r.get("apiVersion", "")).startswith(f"{GROUP}/") for r in refs)


def no_token_okay(obj: Obj) -> bool:
    """CDI: a pre-populated or static-volume DataVolume proceeds without a token when refused."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return PRE_POPULATED_ANNOTATION in annotations or CHECK_STATIC_VOLUME_ANNOTATION in annotations


def _attributes(namespace: str, name: str, resource: str, group: str = "",
                subresource: str = "") -> Obj:
    attrs: Obj = {"namespace": namespace, "verb": "create", "group": group,
                  "resource": resource, "name": name}
    if subresource:
        attrs["subresource"] = subresource
    return attrs


def alternatives(source: Source) -> tuple[tuple[Obj, ...], ...]:
    """The resourceAttributes to review, in CDI's order: allowed when every review of
    one alternative allows (tried in order, stopping at the first that does)."""
    explicit = _attributes(source.namespace, source.name, "datavolumes", GROUP,
                           CLONE_SOURCE_SUBRESOURCE)
    pods = _attributes(source.namespace, source.name, "pods")
    if source.kind == clonetoken.KIND_SNAPSHOT:
        # CDI asks for resource "pvcs", which no RBAC rule for PVCs ever matches; the
        # real resource name is asked here.
        pvcs = _attributes(source.namespace, source.name, "persistentvolumeclaims")
        return ((explicit,), (pods, pvcs))
    return ((explicit,), (pods,))


def review(user: UserInfo, attributes: Obj) -> Obj:
    """A SubjectAccessReview asking whether `user` may do `attributes`."""
    spec: Obj = {"user": user.username, "groups": list(user.groups),
                 "resourceAttributes": dict(attributes)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec}


def denial(user: UserInfo, namespace: str) -> str:
    return (f"User {user.username} has insufficient permissions "
            f"in clone source namespace {namespace}")


def clone_ref(source: Source, target_namespace: str, target_name: str) -> clonetoken.CloneRef:
    return clonetoken.CloneRef(source.namespace, source.name, target_namespace, target_name,
                               source.kind)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def token_patch(obj: Obj, token: str) -> list[Obj]:
    """A JSONPatch setting the token annotation (replacing any value the creator set)."""
    if not isinstance((obj.get("metadata") or {}).get("annotations"), dict):
        return [{"op": "add", "path": "/metadata/annotations",
                 "value": {clone.TOKEN_ANNOTATION: token}}]
    return [{"op": "add", "path": f"/metadata/annotations/{_escape(clone.TOKEN_ANNOTATION)}",
             "value": token}]


def response(uid: str, *, patch: list[Obj] | None = None) -> Obj:
    """An allowing AdmissionReview answer, with a JSONPatch when there is one."""
    out: Obj = {"uid": uid, "allowed": True}
    if patch:
        out["patchType"] = "JSONPatch"
        out["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _review(out)


def refused(uid: str, message: str) -> Obj:
    """CDI's rejection: 422 Invalid, the reason as a cause on the source namespace field."""
    return _review({"uid": uid, "allowed": False, "status": {
        "code": 422, "reason": "Invalid", "message": message,
        "details": {"causes": [{"type": "FieldValueInvalid", "message": message,
                                "field": DENIAL_FIELD}]}}})


def failed(uid: str, message: str, code: int = 400) -> Obj:
    """CDI's answer when authorising could not be done (a lookup failed, bad input)."""
    return _review({"uid": uid, "allowed": False, "status": {"code": code,
                                                             "message": message}})


def _review(response_: Obj) -> Obj:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response_}

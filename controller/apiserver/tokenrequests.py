"""An UploadTokenRequest in, the same object with `status.token` out (pure).

Decoding follows the kube-apiserver's rules for a create: `apiVersion`/`kind`, when
given, must be this resource's; a namespace in the body must match the URL's; unknown
fields are refused, reported as warnings, or dropped as the `fieldValidation` query
parameter says (kubectl sends `Strict`; the kube-apiserver's default is `Warn`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from controller.apiserver import group
from controller.objects import Obj

MAX_NAME = 253
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_KNOWN = {
    "": {"apiVersion", "kind", "metadata", "spec", "status"},
    "spec": {"pvcName"},
    "status": {"token"},
    "metadata": {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                 "generation", "creationTimestamp", "deletionTimestamp",
                 "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
                 "finalizers", "managedFields"},
}
# What a create may set and the answer echoes; the rest of ObjectMeta belongs to stored
# objects, and this one is never stored.
_ECHOED_METADATA = ("name", "generateName", "labels", "annotations")
DIRECTIVES = ("", "Ignore", "Warn", "Strict")


class Invalid(Exception):
    """The body is not an acceptable UploadTokenRequest; the message says why."""


@dataclass(frozen=True)
class Request:
    namespace: str
    pvc: str
    metadata: Obj
    warnings: tuple[str, ...] = ()


def parse(body: Any, namespace: str, field_validation: str = "") -> Request:
    """The request in `body` (decoded JSON) POSTed to `namespace`; raises Invalid."""
    if field_validation not in DIRECTIVES:
        raise Invalid(f'fieldValidation: Unsupported value: "{field_validation}": supported '
                      f'values: "Ignore", "Strict", "Warn"')
    if not isinstance(body, dict):
        raise Invalid("the body is not a JSON object")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version not in (None, "", group.GROUP_VERSION):
        raise Invalid(f"the API version in the data ({api_version}) does not match the "
                      f"expected API version ({group.GROUP_VERSION})")
    if kind not in (None, "", group.KIND):
        raise Invalid(f"the kind in the data ({kind}) does not match the expected kind "
                      f"({group.KIND})")
    metadata = _object(body, "metadata")
    spec = _object(body, "spec")
    _object(body, "status")
    body_ns = metadata.get("namespace")
    if body_ns not in (None, "", namespace):
        raise Invalid("the namespace of the provided object does not match the namespace "
                      "sent on the request")
    unknown = _unknown(body)
    if unknown and field_validation == "Strict":
        raise Invalid("strict decoding error: " + ", ".join(
            f'unknown field "{f}"' for f in unknown))
    pvc = spec.get("pvcName")
    if pvc is None or pvc == "":
        raise Invalid("spec.pvcName: Required value: the PersistentVolumeClaim to upload to")
    if not isinstance(pvc, str):
        raise Invalid("spec.pvcName: Invalid value: must be a string")
    if len(pvc) > MAX_NAME or not _SUBDOMAIN.fullmatch(pvc):
        raise Invalid(f"spec.pvcName: Invalid value: {pvc[:MAX_NAME]!r}: a PersistentVolumeClaim"
                      " name must be a lowercase RFC 1123 subdomain")
    echoed = {k: metadata[k] for k in _ECHOED_METADATA if k in metadata}
    warnings = () if field_validation in ("Ignore", "Strict") else tuple(
        f'unknown field "{f}"' for f in unknown)
    return Request(namespace=namespace, pvc=pvc, metadata=echoed, warnings=warnings)


def answer(request: Request, token: str) -> Obj:
    """The created object as the client reads it back: its request plus the token."""
    return {
        "kind": group.KIND,
        "apiVersion": group.GROUP_VERSION,
        "metadata": {**request.metadata, "namespace": request.namespace},
        "spec": {"pvcName": request.pvc},
        "status": {"token": token},
    }


def _object(body: Obj, key: str) -> Obj:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"{key} must be an object")
    return value


def _unknown(body: Obj) -> list[str]:
    out = [k for k in body if k not in _KNOWN[""]]
    for section in ("metadata", "spec", "status"):
        value = body.get(section)
        if isinstance(value, dict):
            out += [f"{section}.{k}" for k in value if k not in _KNOWN[section]]
    return sorted(out)

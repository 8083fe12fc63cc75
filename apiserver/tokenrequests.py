"""An UploadTokenRequest in, the same object with `status.token` out (pure).

Decoding follows the kube-apiserver's rules for a create: `apiVersion`/`kind`, when
given, must be this resource's; a namespace in the body must match the URL's; unknown
fields are refused, reported as warnings, or dropped as the `fieldValidation` query
parameter says (kubectl sends `Strict`; the kube-apiserver's default is `Warn`). A body
that cannot be decoded is `Malformed` (400); one that decodes but asks for nothing
valid is `Invalid` (422, with one cause per field, as the kube-apiserver reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from apiserver import group
from apiserver.obj import Obj
from cdicontract import upload

MAX_NAME = 253
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
DRY_RUN_ALL = "All"
_SUBDOMAIN_HELP = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character")


class Malformed(Exception):
    """The body or the query cannot be decoded as an UploadTokenRequest (400)."""


class CauseType(StrEnum):
    REQUIRED = "FieldValueRequired"
    INVALID = "FieldValueInvalid"


@dataclass(frozen=True)
class Cause:
    type: CauseType
    field: str
    detail: str

    @property
    def message(self) -> str:
        if self.type is CauseType.REQUIRED:
            return f"Required value: {self.detail}"
        return f"Invalid value: {self.detail}"


class Invalid(Exception):
    """The request decodes but is not acceptable (422); `causes` say which fields."""

    def __init__(self, name: str, causes: list[Cause]) -> None:
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))
        self.name = name
        self.causes = causes


@dataclass(frozen=True)
class Request:
    namespace: str
    pvc: str
    metadata: Obj
    warnings: tuple[str, ...] = ()
    dry_run: bool = False


def parse(body: Any, namespace: str, field_validation: str = "",
          dry_run: tuple[str, ...] = ()) -> Request:
    """The request in `body` (decoded JSON) POSTed to `namespace`.

    Raises Malformed or Invalid.
    """
    if field_validation not in DIRECTIVES:
        raise Malformed(f'fieldValidation: Unsupported value: "{field_validation}": '
                        f'supported values: "Ignore", "Strict", "Warn"')
    for value in dry_run:
        if value != DRY_RUN_ALL:
            raise Malformed(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    if not isinstance(body, dict):
        raise Malformed("the body is not a JSON object")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version not in (None, "", group.GROUP_VERSION):
        raise Malformed(f"the API version in the data ({api_version}) does not match the "
                        f"expected API version ({group.GROUP_VERSION})")
    if kind not in (None, "", group.KIND):
        raise Malformed(f"the kind in the data ({kind}) does not match the expected kind "
                        f"({group.KIND})")
    metadata = _object(body, "metadata")
    spec = _object(body, "spec")
    _object(body, "status")
    body_ns = metadata.get("namespace")
    if body_ns not in (None, "", namespace):
        raise Malformed("the namespace of the provided object does not match the namespace "
                        "sent on the request")
    unknown = _unknown(body)
    if unknown and field_validation == "Strict":
        raise Malformed("strict decoding error: " + ", ".join(
            f'unknown field "{f}"' for f in unknown))
    name = metadata.get("name")
    name = name if isinstance(name, str) else ""
    pvc = spec.get("pvcName")
    if pvc is None or pvc == "":
        raise Invalid(name, [Cause(CauseType.REQUIRED, "spec.pvcName",
                                   "the PersistentVolumeClaim to upload to")])
    if not isinstance(pvc, str):
        raise Malformed("spec.pvcName: expected a string")
    if not upload.is_dns_subdomain(pvc):
        shown = pvc if len(pvc) <= MAX_NAME else pvc[:MAX_NAME] + "..."
        detail = (f"must be no more than {MAX_NAME} characters" if len(pvc) > MAX_NAME
                  else _SUBDOMAIN_HELP)
        raise Invalid(name, [Cause(CauseType.INVALID, "spec.pvcName",
                                   f"{_go_quote(shown)}: {detail}")])
    echoed = {k: metadata[k] for k in _ECHOED_METADATA if k in metadata}
    warnings = () if field_validation in ("Ignore", "Strict") else tuple(
        f'unknown field "{f}"' for f in unknown)
    return Request(namespace=namespace, pvc=pvc, metadata=echoed, warnings=warnings,
                   dry_run=bool(dry_run))


def answer(request: Request, token: str | None) -> Obj:
    """The created object as the client reads it back: its request plus the token.

    A dry run gets no token: it must have no effect, and a token is a credential.
    """
    return {
        "kind": group.KIND,
        "apiVersion": group.GROUP_VERSION,
        "metadata": {**request.metadata, "namespace": request.namespace},
        "spec": {"pvcName": request.pvc},
        "status": {"token": token} if token else {},
    }


def _object(body: Obj, key: str) -> Obj:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{key} must be an object")
    return value


def _unknown(body: Obj) -> list[str]:
    out = [k for k in body if k not in _KNOWN[""]]
    for section in ("metadata", "spec", "status"):
        value = body.get(section)
        if isinstance(value, dict):
            out += [f"{section}.{k}" for k in value if k not in _KNOWN[section]]
    return sorted(out)


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

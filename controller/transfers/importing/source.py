"""What to import, in both APIs: a DataVolume's `spec.source` and a PVC's import annotations.

The DataVolume path writes its source into the PVC's annotations (as CDI does), so the
import reconciler reads one thing, `ImportRequest.from_pvc`, whichever API the user chose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from cdicontract import annotations as ann
from controller import propagation
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers.protocol import Unsupported, source_type


class SourceKind(StrEnum):
    """Values of `storage.import.source` (CDI's) and of the importer's IMPORTER_SOURCE."""

    HTTP = "http"
    S3 = "s3"
    GCS = "gcs"
    REGISTRY = "registry"
    NONE = "none"  # blank

    @property
    def importer_value(self) -> str:
        return "blank" if self is SourceKind.NONE else str(self)


IMPORT_SOURCES = ("http", "s3", "gcs", "registry", "blank")


def pvc_annotations(dv: Obj) -> dict[str, str] | Unsupported:
    """The import annotations that carry a DataVolume's source onto its PVC."""
    spec = o.spec(dv)
    kind = source_type(dv)
    src = o.get_path(spec, "source", kind) or {}
    out: dict[str, str] = {}
    content = spec.get("contentType") or "kubevirt"
    if kind not in IMPORT_SOURCES:
        return Unsupported(kind or "none", f"source type {kind or 'none'!r} is not supported "
                                           "by this controller yet")
    if kind == "blank":
        out[ann.IMPORT_SOURCE] = SourceKind.NONE
        out[ann.IMPORT_ENDPOINT] = ""
    else:
        if kind == "registry":
            if src.get("imageStream"):
                return Unsupported(kind, "registry imageStream needs OpenShift; use url")
            if src.get("pullMethod") == "node":
                return Unsupported(kind, "registry pullMethod node is not supported; use pod")
        out[ann.IMPORT_SOURCE] = kind
        out[ann.IMPORT_ENDPOINT] = str(src.get("url", ""))
    out[ann.CONTENT_TYPE] = str(content)
    if src.get("secretRef"):
        out[ann.IMPORT_SECRET_NAME] = str(src["secretRef"])
    if src.get("certConfigMap"):
        out[ann.IMPORT_CERT_CONFIGMAP] = str(src["certConfigMap"])
    if src.get("checksum"):
        out[ann.IMPORT_CHECKSUM] = str(src["checksum"])
    if src.get("extraHeaders"):
        out[ann.IMPORT_EXTRA_HEADERS] = json.dumps([str(h) for h in src["extraHeaders"]])
    if src.get("secretExtraHeaders"):
        out[ann.IMPORT_SECRET_EXTRA_HEADERS] = json.dumps(
            [str(h) for h in src["secretExtraHeaders"]])
    if src.get("insecureSkipVerify"):
        out[ann.IMPORT_INSECURE_SKIP_VERIFY] = "true"
    arch = o.get_path(src, "platform", "architecture")
    if arch:
        out[ann.IMPORT_PLATFORM_ARCH] = str(arch)
    # Preallocation and the pod priority class: `propagation`, as for every DataVolume.
    return out


def _json_list(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        doc = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(x) for x in doc) if isinstance(doc, list) else ()


@dataclass(frozen=True)
class ImportRequest:
    source: SourceKind
    endpoint: str
    content_type: str = "kubevirt"
    secret: str | None = None
    cert_configmap: str | None = None
    checksum: str | None = None
    extra_headers: tuple[str, ...] = ()
    secret_extra_headers: tuple[str, ...] = ()
    insecure_skip_verify: bool = False
    platform_arch: str | None = None
    preallocation: bool | None = None
    priority_class: str | None = None

    @classmethod
    def from_pvc(cls, pvc: Obj) -> ImportRequest | None:
        """The import a PVC asks for, or None when it is not an import target."""
        a = o.annotations(pvc)
        if ann.IMPORT_ENDPOINT not in a and ann.IMPORT_SOURCE not in a:
            return None
        raw = a.get(ann.IMPORT_SOURCE) or "http"
        try:
            source = SourceKind.NONE if raw == "blank" else SourceKind(raw)
        except ValueError:
            return None  # an upload or clone target, not ours to import
        prealloc = a.get(ann.PREALLOCATION_REQUESTED)
        return cls(
            source=source,
            endpoint=a.get(ann.IMPORT_ENDPOINT, ""),
            content_type=a.get(ann.CONTENT_TYPE) or "kubevirt",
            secret=a.get(ann.IMPORT_SECRET_NAME) or None,
            cert_configmap=a.get(ann.IMPORT_CERT_CONFIGMAP) or None,
            checksum=a.get(ann.IMPORT_CHECKSUM) or None,
            extra_headers=_json_list(a.get(ann.IMPORT_EXTRA_HEADERS)),
            secret_extra_headers=_json_list(a.get(ann.IMPORT_SECRET_EXTRA_HEADERS)),
            insecure_skip_verify=a.get(ann.IMPORT_INSECURE_SKIP_VERIFY) == "true",
            platform_arch=a.get(ann.IMPORT_PLATFORM_ARCH) or None,
            preallocation=None if prealloc is None else prealloc == "true",
            priority_class=propagation.priority_class(pvc),
        )

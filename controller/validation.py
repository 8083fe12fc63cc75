"""Admission rules for DataVolumes that an OpenAPI schema cannot express.

Pure: `validate(new, old)` returns the problems, each naming the field, in the words a
user needs to fix the manifest. The webhook (controller/webhook.py) only wraps this.
"""

from __future__ import annotations

import re

from cdicontract import sizes
from controller.runtime import objects as o
from controller.runtime.objects import Obj

MIN_SIZE = sizes.MIB
SPEC_UPDATE_REFUSED = "Cannot update DataVolume Spec"
"""CDI's words (field DataVolume.Spec) for any spec change but a checkpoint update."""
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:")
# Sources whose size can be taken from the source volume, so spec.storage may omit it.
_SIZE_FROM_SOURCE = ("pvc", "snapshot")


def _source_errors(spec: Obj) -> list[str]:
    source = spec.get("source")
    ref = spec.get("sourceRef")
    kinds = sorted(k for k, v in (source or {}).items() if v is not None)
    if source is not None and ref is not None:
        return ["spec.source and spec.sourceRef are mutually exclusive"]
    if ref is not None:
        return []
    if not kinds:
        return ["spec.source must name exactly one source type "
                "(http, s3, gcs, registry, pvc, snapshot, upload, blank, imageio, vddk), "
                "or use spec.sourceRef"]
    if len(kinds) > 1:
        return [f"spec.source must name exactly one source type, got {', '.join(kinds)}"]
    kind = kinds[0]
    src = o.get_path(spec, "source", kind)
    src = src if isinstance(src, dict) else {}
    errors: list[str] = []
    content = spec.get("contentType") or "kubevirt"
    if content == "archive" and kind in ("blank", "registry", "pvc", "snapshot"):
        errors.append(f"spec.contentType archive is not valid with source {kind}")
    if kind == "http":
        url = str(src.get("url", ""))
        if not re.match(r"^https?://[^/\s]+", url):
            errors.append(f"spec.source.http.url must be an http:// or https:// URL, got {url!r}")
        errors += _checksum_errors(src.get("checksum"))
        for h in src.get("extraHeaders") or []:
            if not _HEADER.match(str(h)):
                errors.append(f"spec.source.http.extraHeaders: {str(h)[:40]!r} is not "
                              "'Name: value'")
    elif kind == "s3":
        url = str(src.get("url", ""))
        if not re.match(r"^(s3|https?)://\S+", url):
            errors.append(f"spec.source.s3.url must be s3://bucket/key or an http(s) endpoint "
                          f"URL, got {url!r}")
    elif kind == "registry":
        reg_url, stream = src.get("url"), src.get("imageStream")
        if bool(reg_url) == bool(stream):
            errors.append("spec.source.registry needs exactly one of url and imageStream")
        elif reg_url and not re.match(r"^(docker|oci-archive)://\S+", str(reg_url)):
            errors.append(f"spec.source.registry.url must start with docker:// or "
                          f"oci-archive://, got {str(reg_url)!r}")
        if stream and src.get("pullMethod") != "node":
            errors.append("spec.source.registry.imageStream requires pullMethod node")
    elif kind in ("pvc", "snapshot") and not (src.get("name") and src.get("namespace")):
        errors.append(f"spec.source.{kind} needs namespace and name")
    return errors


def _checksum_errors(text: object) -> list[str]:
    if not text:
        return []
    alg, sep, digest = str(text).partition(":")
    if not sep or alg not in _HASH_LENGTHS:
        return [f"spec.source.http.checksum must be <alg>:<hex> with alg one of "
                f"{', '.join(_HASH_LENGTHS)}"]
    if len(digest) != _HASH_LENGTHS[alg] or not re.fullmatch(r"[0-9a-fA-F]+", digest):
        return [f"spec.source.http.checksum: a {alg} digest is {_HASH_LENGTHS[alg]} hex digits"]
    return []


def _size_errors(spec: Obj) -> list[str]:
    has_pvc, has_storage = spec.get("pvc") is not None, spec.get("storage") is not None
    if has_pvc and has_storage:
        return ["spec.pvc and spec.storage are mutually exclusive"]
    if not has_pvc and not has_storage:
        return ["one of spec.pvc and spec.storage is required"]
    field = "pvc" if has_pvc else "storage"
    size = o.get_path(spec, field, "resources", "requests", "storage")
    kinds = [k for k, v in (spec.get("source") or {}).items() if v is not None]
    if size is None:
        if field == "storage" and (spec.get("sourceRef") or set(kinds) & set(_SIZE_FROM_SOURCE)):
            return []
        return [f"spec.{field}.resources.requests.storage is required"]
    try:
        n = sizes.parse_quantity(size)
    except sizes.SizeError:
        return [f"spec.{field}.resources.requests.storage: invalid quantity {size!r}"]
    if n < MIN_SIZE:
        return [f"spec.{field}.resources.requests.storage must be at least 1Mi, got {size}"]
    return []


def _checkpoint_update(old: Obj, new: Obj) -> bool:
    """CDI admits a multi-stage import's checkpoint updates: a vddk or imageio source with
    checkpoints, where nothing but `checkpoints` and `finalCheckpoint` changed."""
    source = new.get("source") or {}
    multi_stage = bool(new.get("checkpoints")) and (
        source.get("vddk") is not None or source.get("imageio") is not None)
    if not multi_stage:
        return False
    staged = ("checkpoints", "finalCheckpoint")
    return ({k: v for k, v in old.items() if k not in staged}
            == {k: v for k, v in new.items() if k not in staged})


def validate(new: Obj, old: Obj | None = None) -> list[str]:
    """Problems with a DataVolume being created (old is None) or updated."""
    if old is not None:
        if o.spec(old) != o.spec(new) and not _checkpoint_update(o.spec(old), o.spec(new)):
            return [SPEC_UPDATE_REFUSED]
        return []
    spec = o.spec(new)
    return _source_errors(spec) + _size_errors(spec)

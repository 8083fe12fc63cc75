"""OCI / Docker v2 manifests and indexes: parsing, digest checks, platform choice (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

# Layer media type -> compression of the blob.
LAYER_COMPRESSION: dict[str, str] = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
}

MAX_MANIFEST_BYTES = 4 << 20


def _invalid(message: str) -> ImportFailure:
    return ImportFailure(Reason.MANIFEST_INVALID, message)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    architecture: str | None = None
    os: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def verify_digest(body: bytes, digest: str, what: str) -> None:
    algo, _, _ = digest.partition(":")
    if algo != "sha256":
        raise _invalid(f"{what}: unsupported digest algorithm {algo[:20]!r}")
    if sha256_digest(body) != digest:
        raise _invalid(f"{what} does not match its digest {digest}")


def _descriptor(doc: Any, what: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise _invalid(f"{what}: descriptor is not an object")
    try:
        digest = str(doc["digest"])
        size = int(doc["size"])
        media_type = str(doc.get("mediaType", ""))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # 1e999 is an inf float
        raise _invalid(f"{what}: descriptor lacks digest or size") from exc
    if not digest.startswith("sha256:") or len(digest) != 71 or size < 0:
        raise _invalid(f"{what}: descriptor has an invalid digest or size")
    platform = doc.get("platform") or {}
    if not isinstance(platform, dict):
        raise _invalid(f"{what}: platform is not an object")
    # choose_platform compares and sorts these: a number or a list there is not a platform.
    if any(not isinstance(platform.get(k), str | None) for k in ("architecture", "os", "variant")):
        raise _invalid(f"{what}: platform fields must be strings")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        architecture=platform.get("architecture"),
        os=platform.get("os"),
        variant=platform.get("variant"),
    )


def parse_manifest(
    body: bytes,
    content_type: str | None,
    expected_digest: str | None = None,
    max_bytes: int = MAX_MANIFEST_BYTES,
) -> Manifest | Index:
    """Parse and check a manifest or index; raises MANIFEST_INVALID for anything else."""
    if len(body) > max_bytes:
        raise _invalid(f"manifest is larger than {max_bytes} bytes")
    if expected_digest is not None:
        verify_digest(body, expected_digest, "manifest")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[...", a few KiB deep
        raise _invalid("manifest is not JSON") from exc
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    declared = doc.get("mediaType")
    header = (content_type or "").split(";")[0].strip()
    media_type = str(declared or header)
    if declared and header and header in (*MANIFEST_TYPES, *INDEX_TYPES) and header != declared:
        raise _invalid("manifest media type differs from the served content type")
    if not media_type:  # OCI allows omitting mediaType: tell the two apart by their fields
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if doc.get("schemaVersion") != 2:
        raise _invalid("only schema version 2 manifests are supported")
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("index has no manifest list")
        return Index(media_type, tuple(_descriptor(m, "index entry") for m in entries))
    if media_type in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise _invalid("manifest has no layers")
        parsed = tuple(_descriptor(layer, "layer") for layer in layers)
        for layer in parsed:
            if layer.media_type not in LAYER_COMPRESSION:
                raise _invalid(f"unsupported layer media type {layer.media_type[:100]!r}")
        return Manifest(media_type, _descriptor(doc.get("config"), "config"), parsed)
    raise _invalid(f"unsupported manifest media type {media_type[:100]!r}")


def choose_platform(index: Index, architecture: str, os: str = "linux") -> Descriptor:
    """The index entry for our architecture (KubeVirt's containerdisks are linux images)."""
    matches = [
        m
        for m in index.manifests
        if m.architecture == architecture
        and (m.os in (None, os))
        and m.media_type in (*MANIFEST_TYPES, "")
    ]
    if not matches:
        available = sorted({m.architecture or "?" for m in index.manifests})
        raise ImportFailure(
            Reason.SOURCE_NOT_FOUND,
            f"image has no {architecture} variant (has: {', '.join(available)[:200]})",
        )
    return matches[0]

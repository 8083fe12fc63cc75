"""The kinds of source a DataVolume can name: the keys of `spec.source`, once for everyone.

The controller reads them from a DataVolume and the importer takes one as
`IMPORTER_SOURCE`; the values are CDI's own spelling. `blank` doubles as the importer's
name for "no source" (the legacy `storage.import.source` annotation spells it `none`).
"""

from __future__ import annotations

from enum import StrEnum


class SourceKind(StrEnum):
    HTTP = "http"
    S3 = "s3"
    GCS = "gcs"
    REGISTRY = "registry"
    IMAGEIO = "imageio"
    VDDK = "vddk"
    BLANK = "blank"
    UPLOAD = "upload"
    PVC = "pvc"
    SNAPSHOT = "snapshot"


IMPORT_KINDS = frozenset(
    {SourceKind.HTTP, SourceKind.S3, SourceKind.GCS, SourceKind.REGISTRY, SourceKind.BLANK}
)
"""Kinds an importer pod transfers (pulls); the others are uploads, clones or out of scope."""
CLONE_KINDS = frozenset({SourceKind.PVC, SourceKind.SNAPSHOT})
LEGACY_NONE = "none"
"""The `storage.import.source` annotation's spelling of a blank import."""

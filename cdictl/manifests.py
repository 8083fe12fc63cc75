"""The objects `cdictl upload` creates, built purely from the options (virtctl's shapes).

A DataVolume uses the `storage` API (the storage profile fills in what the user left
out); a bare PVC gets virtctl's defaults (ReadWriteOnce) and the upload target
annotation, which is what makes the controller start an upload server for it.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from cdicontract import annotations as keys
from cdicontract import api
from cdictl.options import READ_ONLY_MANY, UploadOptions

UPLOAD_GROUP = "upload.cdi.kubevirt.io"
UPLOAD_VERSION = "v1beta1"
UPLOAD_TOKEN_REQUESTS = "uploadtokenrequests"  # noqa: S105 - a resource
TOKEN_REQUEST_NAME = "token-for-cdictl"  # noqa: S105 - a name
CONTENT_KUBEVIRT = "kubevirt"
CONTENT_ARCHIVE = "archive"
APPLY_STORAGE_PROFILE_LABEL = "cdi.kubevirt.io/applyStorageProfile"
"""virtctl sets it on the PVCs it creates, for CDI's PVC-rendering webhook."""


class ManifestError(ValueError):
    pass


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
"""apimachinery's quantity shape; its error names this very pattern."""


def _size(options: UploadOptions) -> str:
    size = options.size
    if not size:
        raise ManifestError("when creating a resource, the size must be specified")
    try:
        valid = bool(_QUANTITY.match(size)) and parse_quantity(size) is not None  # type: ignore[no-untyped-call]
    except ValueError:
        valid = False
    if not valid:
        # apimachinery answers every malformed quantity with this one message.
        raise ManifestError(f"validation failed for size={size}: quantities must match the "
                            f"regular expression '{_QUANTITY.pattern}'")
    return size


def _writable(options: UploadOptions) -> None:
    """virtctl refuses a read-only volume when it creates one (an existing one it takes)."""
    if options.access_mode == READ_ONLY_MANY:
        raise ManifestError("cannot upload to a readonly volume, use either ReadWriteOnce or "
                            "ReadWriteMany if supported")


def _content_type(options: UploadOptions) -> str:
    return CONTENT_ARCHIVE if options.archive else CONTENT_KUBEVIRT


def datavolume(options: UploadOptions, namespace: str) -> dict[str, Any]:
    storage: dict[str, Any] = {"resources": {"requests": {"storage": _size(options)}}}
    _writable(options)
    if options.storage_class:
        storage["storageClassName"] = options.storage_class
    if options.access_mode:
        storage["accessModes"] = [options.access_mode]
    if options.volume_mode is not None:
        storage["volumeMode"] = options.volume_mode.kubernetes
    meta: dict[str, Any] = {"name": options.name, "namespace": namespace}
    if options.force_bind:
        meta["annotations"] = {keys.IMMEDIATE_BINDING: ""}
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.DATAVOLUME_KIND,
        "metadata": meta,
        "spec": {
            "source": {"upload": {}},
            "contentType": _content_type(options),
            "storage": storage,
        },
    }


def pvc(options: UploadOptions, namespace: str) -> dict[str, Any]:
    _writable(options)
    spec: dict[str, Any] = {
        "accessModes": [options.access_mode or "ReadWriteOnce"],
        "resources": {"requests": {"storage": _size(options)}},
    }
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    if options.volume_mode is not None:
        spec["volumeMode"] = options.volume_mode.kubernetes
    ann = {keys.UPLOAD_TARGET: "", keys.CONTENT_TYPE: _content_type(options)}
    if options.force_bind:
        ann[keys.IMMEDIATE_BINDING] = ""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": options.name,
            "namespace": namespace,
            "annotations": ann,
            "labels": {APPLY_STORAGE_PROFILE_LABEL: "true"},
        },
        "spec": spec,
    }


def token_request(pvc_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{UPLOAD_GROUP}/{UPLOAD_VERSION}",
        "kind": "UploadTokenRequest",
        "metadata": {"name": TOKEN_REQUEST_NAME},
        "spec": {"pvcName": pvc_name},
    }


"""Clone facts shared by the controller, its admission webhook, the cloner and the upload server.

Host-assisted clone (strategy `copy`), as CDI does it: a source pod (`cdi-cloner`) in the
source namespace mounts the source PVC read-only and streams it over mutual TLS to an
upload server on the target PVC (the upload server in clone mode). The cloner's client
certificate is issued by the controller from the upload servers' client CA with subject
CN `client_name(target_pvc_uid)`, and the clone target's upload server accepts only that
name: the upload proxy cannot write into a clone target and one clone's cloner cannot
write into another's.

The wire format of the stream (sparse extents, compression, the final digest) is the
cloner's and the upload server's business: see `cdicontract/clonestream.py`.
"""

from __future__ import annotations

from enum import StrEnum

from cdicontract import annotations as ann

TOKEN_ANNOTATION = "cdi.kubevirt.io/storage.clone.token"  # noqa: S105 - a name
"""On a DataVolume (or a legacy CloneRequest PVC): the admission webhook's signed approval."""
EXTENDED_TOKEN_ANNOTATION = "cdi.kubevirt.io/storage.extended.clone.token"  # noqa: S105
"""On the target PVC: the controller's own long-lived re-signing of a verified token."""
CLONE_REQUEST_ANNOTATION = ann.CLONE_REQUEST
"""`k8s.io/CloneRequest: <ns>/<name>` (legacy PVC API, and the DataVolume's target PVC)."""
FALLBACK_REASON_ANNOTATION = "cdi.kubevirt.io/cloneFallbackReason"
CLONE_TYPE_ANNOTATION = "cdi.kubevirt.io/cloneType"
"""The strategy the controller chose for a target PVC (`copy`, `snapshot`, `csi-clone`)."""
CLONE_OF_ANNOTATION = "cdi.kubevirt.io/storage.cloneOf"
"""Set to "true" on a target PVC once its clone has succeeded (CDI's AnnCloneOf)."""


class Strategy(StrEnum):
    COPY = "copy"
    SNAPSHOT = "snapshot"
    CSI_CLONE = "csi-clone"


PROGRESS_METRIC = "kubevirt_cdi_clone_progress_total"
"""Labelled {ownerUID}; served by the clone target's upload server on its metrics port."""

CLONER_IMAGE = "cdi-py/cloner"
CLONER_COMMAND = "cdi-cloner"
SOURCE_POD_SUFFIX = "-source-pod"
CLONE_PATH = "/v1beta1/clone"
"""The upload server's endpoint for a clone stream (clone mode only)."""

TRANSFER_KIND = "clone"
"""The value of `TRANSFER_LABEL` on a clone's pods, Services and Secrets."""

SOURCE_PVC_LABEL = "cdi.kubevirt.io/clone-source-pvc"


def source_pod_name(target_pvc_uid: str) -> str:
    """The source pod lives in the source namespace; named after the target PVC's UID."""
    return f"{target_pvc_uid}{SOURCE_POD_SUFFIX}"


def client_name(target_pvc_uid: str) -> str:
    """The subject CN of the cloner's client certificate for one target PVC (<= 64 chars)."""
    return f"{target_pvc_uid}.clone.cdi.kubevirt.io"


def client_secret_name(target_pvc_uid: str) -> str:
    """The Secret (in the source namespace) holding the cloner's client certificate."""
    return f"{target_pvc_uid}-clone-client"


# The cloner's environment (set by the controller on the source pod).
ENV_UPLOAD_URL = "CLONER_UPLOAD_URL"
"""https://<target upload Service>.<target ns>.svc:443/v1beta1/clone"""
ENV_CONTENT_TYPE = "CLONER_CONTENT_TYPE"
"""kubevirt (the image file disk.img, or the raw device) or archive (the volume's files)."""
ENV_VOLUME_MODE = "CLONER_VOLUME_MODE"
"""Filesystem or Block: the source's volume mode."""
ENV_TLS_DIR = "CLONER_TLS_DIR"
TLS_DIR = "/etc/cdi-cloner/tls"
"""tls.crt, tls.key (the client certificate) and ca.crt (the upload servers' serving CA)."""
ENV_OWNER_UID = "OWNER_UID"
ENV_TERMINATION_LOG = "CLONER_TERMINATION_LOG"

# The upload server's clone mode (set by the controller on a clone target's server pod).
ENV_SERVER_MODE = "UPLOADSERVER_MODE"
SERVER_MODE_UPLOAD = "upload"
SERVER_MODE_CLONE = "clone"

"""What every transfer pod's container shares: resources from the CDIConfig, the
termination report path, the non-root, no-capability security context with a read-only
root file system, and the one writable place outside the volumes, /tmp (pure).

/tmp is where the importer, upload server and cloner put their temporary files (Python's
`tempfile`: TLS material of the metrics server, nbdkit's and the range proxy's Unix
sockets), a disk-backed emptyDir. The importer never puts image data there (a copy goes
to its scratch PVC at /scratch), so its /tmp is bounded; the upload server's is not yet (a
block target's upload that needs a copy still makes it there)."""

from __future__ import annotations

import copy

from cdicontract import envvars as env
from cdicontract import importpod as ip
from controller.cdiconfig import EffectiveConfig
from controller.runtime.objects import Obj


def container_common(config: EffectiveConfig) -> Obj:
    """The container fields import, upload and clone pods share."""
    return {
        "resources": copy.deepcopy(config.resources),
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": ip.IMPORTER_UID,
            "readOnlyRootFilesystem": True,
        },
    }


TMP_VOLUME_NAME = "cdi-tmp"
TMP_DIR = "/tmp"


def tmp_volume(size_limit: str | None = None) -> Obj:
    if size_limit is None:
        return {"name": TMP_VOLUME_NAME, "emptyDir": {}}
    return {"name": TMP_VOLUME_NAME, "emptyDir": {"sizeLimit": size_limit}}


def tmp_mount() -> Obj:
    return {"name": TMP_VOLUME_NAME, "mountPath": TMP_DIR}


def pod_common(config: EffectiveConfig) -> Obj:
    """The pod-level fields they share: CDIConfig's imagePullSecrets, as CDI gives them to
    its importer, upload and clone pods (the Secrets must exist in the pod's namespace)."""
    if not config.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": n} for n in config.image_pull_secrets]}

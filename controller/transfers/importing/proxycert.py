"""CDIConfig importProxy.trustedCAProxy for the importer pod (pure builders), as CDI does it.

The setting names a ConfigMap of the CDI namespace (key `ca.pem`, any PEM key works). A
pod cannot mount another namespace's ConfigMap, so a copy `import-proxy-cm-<pvc>` is made
in the PVC's namespace (owned by the PVC, deleted with the pod) and mounted at
/proxycerts; `IMPORTER_PROXY_CERT_DIR` tells the importer, which trusts those
certificates besides the others for the proxy connection.
"""

from __future__ import annotations

import hashlib

from cdicontract import annotations as ann
from cdicontract import envvars as env
from cdicontract import importpod as ip
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.actions import CreateCopy
from controller.runtime.objects import Obj
from controller.transfers import protocol

PREFIX = "import-proxy-cm-"
_MAX_NAME = 253


def configmap_name(pvc_name: str) -> str:
    """CDI's `import-proxy-cm-<pvc>`, shortened with a hash when it would be too long."""
    name = PREFIX + pvc_name
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(pvc_name.encode()).hexdigest()[:10]
    return f"{name[:_MAX_NAME - 11]}-{digest}"


def copy(pvc: Obj, config: EffectiveConfig, cdi_namespace: str) -> CreateCopy | None:
    """The action that copies the trusted CA ConfigMap next to the PVC; None when unset."""
    if not config.trusted_ca_proxy:
        return None
    body: Obj = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(o.name(pvc)), "namespace": o.namespace(pvc),
            "labels": {ann.LABEL_APP: ann.LABEL_APP_VALUE,
                       **protocol.owner_labels(pvc, protocol.Kind.IMPORT)},
            "ownerReferences": [o.owner_ref(pvc)],
        },
    }
    return CreateCopy(kube.CONFIGMAPS, o.namespace(pvc), body, cdi_namespace,
                      config.trusted_ca_proxy)


def volume(pvc: Obj) -> Obj:
    return {"name": ip.PROXY_CERT_VOLUME_NAME,
            "configMap": {"name": configmap_name(o.name(pvc))}}


def mount() -> Obj:
    return {"name": ip.PROXY_CERT_VOLUME_NAME, "mountPath": ip.PROXY_CERT_DIR,
            "readOnly": True}


def env_var() -> Obj:
    return {"name": env.PROXY_CERT_DIR, "value": ip.PROXY_CERT_DIR}

"""The import proxy's URLs as a Secret beside the importer pod (pure builders).

CDIConfig `importProxy.HTTPProxy`/`HTTPSProxy` may carry credentials
(`http://user:password@proxy:3128`). CDI puts them into the importer pod's env as plain
values, where everyone who may read pods in the namespace sees them. Here they go into a
Secret `importer-<pvc>-proxy` in the PVC's namespace (owned by the PVC, deleted with the
pod), and the pod's env takes them with `secretKeyRef`: the pod spec never holds them.
`noProxy` holds no secret and stays a plain value.
"""

from __future__ import annotations

from cdicontract import annotations as ann
from cdicontract import importpod as ip
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers import protocol

HTTP_KEY = "HTTP_PROXY"
HTTPS_KEY = "HTTPS_PROXY"
# The importer reads either spelling (requests honours both); both are set, as CDI does.
_ENV_NAMES = {HTTP_KEY: ("http_proxy", "HTTP_PROXY"), HTTPS_KEY: ("https_proxy", "HTTPS_PROXY")}


def secret_name(pvc_name: str) -> str:
    return f"{ip.POD_NAME_PREFIX}{pvc_name}-proxy"


def _values(config: EffectiveConfig) -> dict[str, str]:
    values = {HTTP_KEY: config.http_proxy, HTTPS_KEY: config.https_proxy}
    return {k: v for k, v in values.items() if v}


def build(pvc: Obj, config: EffectiveConfig) -> Obj | None:
    """The Secret holding the proxy URLs for this PVC's importer; None without a proxy."""
    values = _values(config)
    if not values:
        return None
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": secret_name(o.name(pvc)), "namespace": o.namespace(pvc),
            "labels": {ann.LABEL_APP: ann.LABEL_APP_VALUE,
                       **protocol.owner_labels(pvc, protocol.Kind.IMPORT)},
            "ownerReferences": [o.owner_ref(pvc)],
        },
        "stringData": values,
    }


def env(pvc: Obj, config: EffectiveConfig) -> list[Obj]:
    """The importer's proxy env: the URLs from the Secret, noProxy as a value."""
    out: list[Obj] = []
    for key in _values(config):
        ref = {"secretKeyRef": {"name": secret_name(o.name(pvc)), "key": key}}
        out += [{"name": n, "valueFrom": ref} for n in _ENV_NAMES[key]]
    if config.no_proxy:
        out += [{"name": n, "value": config.no_proxy} for n in ("no_proxy", "NO_PROXY")]
    return out

"""The effective CDI configuration: the CDIConfig singleton's spec with CDI's defaults applied.

Pure: built from the CDIConfig object and the StorageClasses; its `status()` is what the
controller writes to `CDIConfig.status` so users can read the values in force.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from cdicontract import annotations as ann
from cdicontract import sizes
from controller.runtime import objects as o
from controller.runtime.objects import Obj

DEFAULT_OVERHEAD = sizes.DEFAULT_OVERHEAD
DENY_LOCAL_ADDRESSES_GATE = "DenyLocalImportAddresses"
"""Ours: importer pods refuse sources on loopback and link-local addresses (SSRF guard)."""
DEFAULT_POD_RESTART_LIMIT = 5
"""Ours (CDI restarts forever): restarts of a failing importer before its DataVolume fails."""
DEFAULT_RESOURCES: Obj = {
    "requests": {"cpu": "100m", "memory": "60M"},
    "limits": {"cpu": "750m", "memory": "600M"},
}


def _overhead(text: Any, fallback: str) -> str:
    """A valid overhead string in [0, 1), else the fallback (the schema already checks)."""
    try:
        v = float(str(text))
    except ValueError:
        return fallback
    return str(text) if 0 <= v < 1 else fallback


@dataclass(frozen=True)
class EffectiveConfig:
    global_overhead: str = DEFAULT_OVERHEAD
    class_overhead: dict[str, str] = field(default_factory=dict)
    resources: Obj = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    trusted_ca_proxy: str = ""
    insecure_registries: tuple[str, ...] = ()
    scratch_class: str = ""
    """status.scratchSpaceStorageClass: spec.scratchSpaceStorageClass when that class
    exists, else the default class, else "" (then a scratch PVC takes its target's class)."""
    scratch_class_missing: str = ""
    """spec.scratchSpaceStorageClass when it names no StorageClass (scratch PVCs wait)."""
    preallocation: bool = False
    upload_proxy_url: str = ""
    """spec.uploadProxyURLOverride; the published URL is `upload_proxy_url()`'s."""
    feature_gates: frozenset[str] = frozenset()
    image_pull_secrets: tuple[str, ...] = ()
    """spec.imagePullSecrets: Secret names every transfer pod pulls its image with."""
    pod_restart_limit: int = DEFAULT_POD_RESTART_LIMIT
    """spec.podRestartLimit (ours): 0 restarts forever, as CDI."""

    @property
    def deny_local_addresses(self) -> bool:
        return DENY_LOCAL_ADDRESSES_GATE in self.feature_gates

    def overhead_for(self, storage_class: str | None) -> str:
        if storage_class and storage_class in self.class_overhead:
            return self.class_overhead[storage_class]
        return self.global_overhead

    def status(self) -> Obj:
        out: Obj = {
            "filesystemOverhead": {
                "global": self.global_overhead,
                "storageClass": dict(sorted(self.class_overhead.items())),
            },
            "defaultPodResourceRequirements": copy.deepcopy(self.resources),
            "importProxy": {
                "HTTPProxy": self.http_proxy,
                "HTTPSProxy": self.https_proxy,
                "noProxy": self.no_proxy,
                "trustedCAProxy": self.trusted_ca_proxy,
            },
            "preallocation": self.preallocation,
        }
        if self.scratch_class:
            out["scratchSpaceStorageClass"] = self.scratch_class
        if self.upload_proxy_url:
            out["uploadProxyURL"] = self.upload_proxy_url
        if self.image_pull_secrets:
            out["imagePullSecrets"] = [{"name": n} for n in self.image_pull_secrets]
        out["podRestartLimit"] = self.pod_restart_limit
        return out


def default_class(storage_classes: list[Obj]) -> str | None:
    """The default virt class, else the cluster default (the newest when several claim it)."""
    for key in (ann.DEFAULT_VIRT_CLASS, ann.DEFAULT_CLASS):
        marked = [sc for sc in storage_classes if o.annotations(sc).get(key) == "true"]
        if marked:
            newest = max(marked, key=lambda sc: (o.meta(sc).get("creationTimestamp", ""),
                                                  o.name(sc)))
            return o.name(newest)
    return None


def effective(cdiconfig: Obj | None, storage_classes: list[Obj]) -> EffectiveConfig:
    spec = o.spec(cdiconfig) if cdiconfig else {}
    fs = spec.get("filesystemOverhead") or {}
    global_oh = _overhead(fs.get("global", DEFAULT_OVERHEAD), DEFAULT_OVERHEAD)
    per_class = {str(k): _overhead(v, global_oh)
                 for k, v in (fs.get("storageClass") or {}).items()}
    # Every class gets an entry in the status, as CDI reports it.
    for sc in storage_classes:
        per_class.setdefault(o.name(sc), global_oh)
    resources = spec.get("podResourceRequirements") or DEFAULT_RESOURCES
    proxy = spec.get("importProxy") or {}
    asked = str(spec.get("scratchSpaceStorageClass") or "")
    exists = asked in {o.name(sc) for sc in storage_classes}
    scratch = (asked if exists else "") or default_class(storage_classes) or ""
    return EffectiveConfig(
        global_overhead=global_oh,
        class_overhead=per_class,
        resources=copy.deepcopy(resources),
        http_proxy=str(proxy.get("HTTPProxy") or ""),
        https_proxy=str(proxy.get("HTTPSProxy") or ""),
        no_proxy=str(proxy.get("noProxy") or ""),
        trusted_ca_proxy=str(proxy.get("trustedCAProxy") or ""),
        insecure_registries=tuple(str(r) for r in spec.get("insecureRegistries") or ()),
        scratch_class=str(scratch),
        scratch_class_missing="" if exists else asked,
        preallocation=bool(spec.get("preallocation", False)),
        upload_proxy_url=str(spec.get("uploadProxyURLOverride") or ""),
        feature_gates=frozenset(str(g) for g in spec.get("featureGates") or ()),
        image_pull_secrets=tuple(str(r["name"]) for r in spec.get("imagePullSecrets") or ()
                                 if isinstance(r, dict) and r.get("name")),
        pod_restart_limit=_restart_limit(spec.get("podRestartLimit")),
    )


def _restart_limit(value: Any) -> int:
    """spec.podRestartLimit, else the default (the schema already refuses the rest)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return DEFAULT_POD_RESTART_LIMIT


def upload_proxy_url(override: str, service: Obj | None, nodes: list[Obj]) -> str:
    """What CDIConfig publishes in status.uploadProxyURL (virtctl reads it).

    The override when set; else the upload proxy's Service: through a node's InternalIP
    and the node port when it is a NodePort Service, else its cluster DNS name; "" when
    there is no proxy Service.
    """
    if override:
        return override
    if service is None:
        return ""
    if o.spec(service).get("type") == "NodePort":
        port = next((p.get("nodePort") for p in o.spec(service).get("ports") or []
                     if p.get("nodePort")), None)
        ip = next((a.get("address") for n in sorted(nodes, key=o.name)
                   for a in o.status(n).get("addresses") or []
                   if a.get("type") == "InternalIP" and a.get("address")), None)
        if port and ip:
            host = f"[{ip}]" if ":" in str(ip) else str(ip)
            return f"https://{host}:{port}"
    return f"https://{o.name(service)}.{o.namespace(service)}.svc"

"""A container's environment, resolved the way the kubelet resolves it.

Why: the product reads its configuration from env vars filled from the pod spec
(literals, Secrets, ConfigMaps, the downward API), so the node must resolve them with
the same precedence and failure modes (a missing required key is
``CreateContainerConfigError``, not a silently empty value).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from localcluster.api import Api, Obj


class ConfigError(Exception):
    """A referenced Secret/ConfigMap or key is missing: CreateContainerConfigError."""


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$\(")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion; ``$$(`` escapes; unknown refs stay as they are."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$(":
            return "$("
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, value)


def field_value(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs", [])),
        "status.hostIPs": ",".join(p["ip"] for p in status.get("hostIPs", [])),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef {path}")


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


def quantity(q: str) -> float:
    """A resource quantity (``600M``, ``750m``, ``1Gi``) as a number of base units."""
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(q).strip())
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    num, unit = float(m.group(1)), m.group(2) or ""
    return num / 1000 if unit == "m" else num * _UNITS[unit]


def resource_value(container: Obj, ref: Obj) -> str:
    res = ref["resource"]
    kind, name = res.split(".", 1)
    value = container.get("resources", {}).get(kind, {}).get(name)
    if value is None:
        # The kubelet falls back to node allocatable for an unset limit.
        return "8" if name == "cpu" else str(32 * 2**30)
    divisor = quantity(ref.get("divisor", "1"))
    amount = quantity(value) / divisor
    return str(int(-(-amount // 1)))  # ceiling, as the kubelet rounds


class EnvResolver:
    def __init__(self, api: Api, pod: Obj) -> None:
        self.api = api
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self._cache: dict[tuple[str, str], Obj | None] = {}

    def _obj(self, kind: str, name: str) -> Obj | None:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = self.api.get_or_none(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        return self._cache[key]

    def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        """A Secret's or ConfigMap's data, decoded; ``None`` if optional and missing."""
        obj = self._obj(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind[:-1]} "{name}" not found')
        if kind == "secrets":
            return {
                k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in obj.get("data", {}).items()
            }
        data = dict(obj.get("data", {}))
        for k, v in obj.get("binaryData", {}).items():
            data[k] = base64.b64decode(v).decode("utf-8", "replace")
        return data

    def _key(self, kind: str, ref: Obj) -> str | None:
        optional = bool(ref.get("optional", False))
        data = self.data(kind, ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                f"couldn't find key {ref['key']} in {kind[:-1]} {self.ns}/{ref['name']}"
            )
        return data[ref["key"]]

    def resolve(self, container: Obj, base: dict[str, str]) -> dict[str, str]:
        env: dict[str, str] = dict(base)
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            for kind, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if field in source:
                    ref = source[field]
                    data = self.data(kind, ref["name"], bool(ref.get("optional", False)))
                    for k, v in (data or {}).items():
                        env[prefix + k] = v
        for var in container.get("env", []):
            name = var["name"]
            if "value" in var:
                env[name] = expand(var["value"], env)
                continue
            src = var.get("valueFrom")
            if not src:
                env[name] = ""
                continue
            value: str | None
            if "fieldRef" in src:
                value = field_value(self.pod, src["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in src:
                value = resource_value(container, src["resourceFieldRef"])
            elif "secretKeyRef" in src:
                value = self._key("secrets", src["secretKeyRef"])
            elif "configMapKeyRef" in src:
                value = self._key("configmaps", src["configMapKeyRef"])
            else:
                raise ConfigError(f"unsupported valueFrom for {name}")
            if value is not None:
                env[name] = value
        return env

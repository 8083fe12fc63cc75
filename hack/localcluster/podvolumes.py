"""A pod's volumes, made ready on the host before its containers start.

Why: containers must find PVCs, Secrets, ConfigMaps, emptyDirs, the downward API and
the projected service-account token at the paths the pod spec names. Each volume is a
host directory (or, for Block PVCs, a device node) that the sandbox binds in; the
service-account token comes from the TokenRequest API, bound to the pod, so in-cluster
clients authenticate as their real ServiceAccount and RBAC applies for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from localcluster.api import Api, Obj
from localcluster.podenv import ConfigError, EnvResolver, field_value, resource_value


class NotReady(Exception):
    """A volume cannot be set up yet (its PVC is unbound): the pod stays Pending."""


@dataclass(frozen=True)
class Volume:
    name: str
    path: Path
    block: bool = False


@dataclass(frozen=True)
class Ownership:
    """Who must be able to use the volumes: the kubelet's fsGroup treatment."""

    uid: int | None
    fs_group: int | None


def _write_file(path: Path, content: bytes, mode: int, own: Ownership) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if own.fs_group is not None:
        # With an fsGroup the kubelet makes files group-readable by it.
        mode |= (mode & 0o700) >> 3
        os.chown(path, -1, own.fs_group)
    elif own.uid not in (None, 0):
        # A non-root user without fsGroup must still read its own token, as the
        # kubelet arranges for projected tokens.
        os.chown(path, own.uid or 0, -1)
    path.chmod(mode)


def _items(
    data: dict[str, bytes], items: list[Obj] | None, default_mode: int
) -> list[tuple[str, bytes, int]]:
    if not items:
        return [(k, v, default_mode) for k, v in data.items()]
    out = []
    for item in items:
        if item["key"] not in data:
            continue
        out.append((item["path"], data[item["key"]], item.get("mode", default_mode)))
    return out


def _make_group_writable(root: Path, gid: int) -> None:
    """fsGroup: the volume's tree is group-owned by it, group-writable, setgid dirs."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            with contextlib.suppress(OSError):
                os.lchown(p, -1, gid)
                if not p.is_symlink():
                    m = p.stat().st_mode
                    extra = stat.S_IRGRP | stat.S_IWGRP
                    if stat.S_ISDIR(m) or m & stat.S_IXUSR:
                        extra |= stat.S_IXGRP
                    if stat.S_ISDIR(m):
                        extra |= stat.S_ISGID
                    p.chmod(stat.S_IMODE(m) | extra)
    with contextlib.suppress(OSError):
        os.chown(root, -1, gid)
        root.chmod(stat.S_IMODE(root.stat().st_mode) | 0o070 | stat.S_ISGID)


def node_matches(pv: Obj, node: str) -> bool:
    """Whether ``pv``'s required nodeAffinity admits ``node`` by its hostname label
    (the only label our nodes are told apart by); a PV without one is everywhere."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        if all(_admits(e, node) for e in exprs):
            return True
    return False


def _admits(expr: Obj, node: str) -> bool:
    if expr.get("key") != "kubernetes.io/hostname":
        return True  # other labels are the same on every simulated node
    values = expr.get("values") or []
    op = expr.get("operator")
    if op == "In":
        return node in values
    if op == "NotIn":
        return node not in values
    return op in ("Exists",)


class VolumeBuilder:
    def __init__(
        self, api: Api, pod: Obj, pod_dir: Path, own: Ownership, *, node: str | None = None
    ) -> None:
        """``node``: the node building the volumes; a PV bound to another node by its
        nodeAffinity is not reachable from it (stays NotReady, as a kubelet's mount
        of another node's local volume fails)."""
        self.api = api
        self.node = node
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.dir = pod_dir / "volumes"
        self.own = own
        self.env = EnvResolver(api, pod)

    def build_all(self) -> dict[str, Volume]:
        return {v["name"]: self.build(v) for v in self.pod["spec"].get("volumes", [])}

    def build(self, spec: Obj) -> Volume:
        name = spec["name"]
        target = self.dir / name
        if "persistentVolumeClaim" in spec:
            return self._pvc(name, spec["persistentVolumeClaim"]["claimName"])
        if "ephemeral" in spec:
            return self._pvc(name, f"{self.pod['metadata']['name']}-{name}")
        if "hostPath" in spec:
            path = Path(spec["hostPath"]["path"])
            if spec["hostPath"].get("type") in ("DirectoryOrCreate",):
                path.mkdir(parents=True, exist_ok=True)
            return Volume(name, path, block=path.is_block_device())
        if "emptyDir" in spec:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            return Volume(name, target)
        fresh = target.parent / f".{name}.new"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        if "secret" in spec:
            self._secret(fresh, spec["secret"])
        elif "configMap" in spec:
            self._configmap(fresh, spec["configMap"])
        elif "downwardAPI" in spec:
            self._downward(
                fresh, spec["downwardAPI"]["items"], spec["downwardAPI"].get("defaultMode", 0o644)
            )
        elif "projected" in spec:
            self._projected(fresh, spec["projected"])
        else:
            raise ConfigError(f"volume {name}: unsupported type {sorted(spec)}")
        fresh.chmod(0o755 if self.own.fs_group is None else 0o3775)
        if self.own.fs_group is not None:
            os.chown(fresh, -1, self.own.fs_group)
        shutil.rmtree(target, ignore_errors=True)
        fresh.rename(target)
        return Volume(name, target)

    def _pvc(self, name: str, claim: str) -> Volume:
        pvc = self.api.get_or_none(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise NotReady(f'persistentvolumeclaim "{claim}" not found')
        if pvc.get("metadata", {}).get("deletionTimestamp"):
            raise NotReady(f'persistentvolumeclaim "{claim}" is being deleted')
        volume = pvc["spec"].get("volumeName")
        if pvc.get("status", {}).get("phase") != "Bound" or not volume:
            raise NotReady(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.api.get(f"/api/v1/persistentvolumes/{volume}")
        if self.node is not None and not node_matches(pv, self.node):
            raise NotReady(
                f"volume {volume} of claim {claim!r} is local to another node, not {self.node}"
            )
        src = pv["spec"].get("local") or pv["spec"].get("hostPath")
        if not src:
            raise ConfigError(f"PV {volume} is neither local nor hostPath")
        path = Path(src["path"])
        block = pv["spec"].get("volumeMode") == "Block"
        if not block and self.own.fs_group is not None:
            _make_group_writable(path, self.own.fs_group)
        return Volume(name, path, block=block)

    def _secret(self, root: Path, spec: Obj) -> None:
        data = self.env.data("secrets", spec["secretName"], bool(spec.get("optional", False)))
        raw = {k: v.encode() for k, v in (data or {}).items()}
        for path, content, mode in _items(raw, spec.get("items"), spec.get("defaultMode", 0o644)):
            _write_file(root / path, content, mode, self.own)

    def _configmap(self, root: Path, spec: Obj) -> None:
        data = self.env.data("configmaps", spec["name"], bool(spec.get("optional", False)))
        raw = {k: v.encode() for k, v in (data or {}).items()}
        for path, content, mode in _items(raw, spec.get("items"), spec.get("defaultMode", 0o644)):
            _write_file(root / path, content, mode, self.own)

    def _downward(self, root: Path, items: list[Obj], default_mode: int) -> None:
        for item in items:
            if "fieldRef" in item:
                value = field_value(self.pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                container = next(
                    c
                    for c in self.pod["spec"]["containers"]
                    if c["name"] == ref.get("containerName")
                )
                value = resource_value(container, ref)
            _write_file(
                root / item["path"], value.encode(), item.get("mode", default_mode), self.own
            )

    def _projected(self, root: Path, spec: Obj) -> None:
        mode = spec.get("defaultMode", 0o644)
        for source in spec.get("sources", []):
            if "secret" in source:
                self._secret(
                    root,
                    {
                        "defaultMode": mode,
                        "secretName": source["secret"]["name"],
                        **source["secret"],
                    },
                )
            elif "configMap" in source:
                self._configmap(root, {"defaultMode": mode, **source["configMap"]})
            elif "downwardAPI" in source:
                self._downward(root, source["downwardAPI"]["items"], mode)
            elif "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                token = self.token(sat.get("audience"), int(sat.get("expirationSeconds", 3607)))
                _write_file(root / sat["path"], token.encode(), 0o600, self.own)

    def token(self, audience: str | None, seconds: int) -> str:
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        result = self.api.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        return str(result["status"]["token"])

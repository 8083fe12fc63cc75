"""Clones as users meet them: sources written into real volumes, DataVolumes created as
impersonated users under real RBAC, and every target read back from its volume.

Sources are bare PVCs whose volume this host writes directly (`cluster.pv_path`: the
mounted directory for Filesystem, where the image is `disk.img`, or the loop device for
Block), with holes, random and compressible data, so a clone has something a wrong
extent, a lost hole or a short write would show. The expected bytes stay in memory and
each target is compared with them byte for byte: the source's bytes, then zeros up to
the end of the target (a Filesystem target grows to its usable size).

Users are impersonated (`Impersonate-User` / `Impersonate-Group` headers, what
`kubectl --as --as-group` sends) by the admin client, so admission sees their userInfo
and the webhook's SubjectAccessReviews are answered by the real RBAC authorizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from localcluster.api import Api, ApiError

from cdicontract import annotations as ann
from cdicontract import clone, upload
from tests.cluster.helpers import wait_for

MiB = 1 << 20
DV_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
DS_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datasources"
PVC_PATH = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
RB_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
ROLE_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/cdi/leases/cdi-controller-leader"
DEPLOY = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"
SOURCE_RULE = {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes/source"],
               "verbs": ["create"]}
PAUSED_BY = "e2e-paused"


# -- users -------------------------------------------------------------------------------

class ImpersonatingApi(Api):
    """The admin's client acting as `user` (in `group`, plus system:authenticated)."""

    def __init__(self, base: Api, user: str, group: str | None = None) -> None:
        super().__init__(base.creds, base.timeout)
        self.user, self.group = user, group

    def _session(self) -> requests.Session:
        s = super()._session()
        s.headers["Impersonate-User"] = self.user
        if self.group:
            s.headers["Impersonate-Group"] = self.group
        return s


def bind(api: Api, ns: str, role_kind: str, role: str, *, user: str | None = None,
         group: str | None = None, sa: tuple[str, str] | None = None) -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    subjects: list[dict[str, str]] = []
    if sa:
        subjects.append({"kind": "ServiceAccount", "namespace": sa[0], "name": sa[1]})
    if user:
        subjects.append({"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                         "name": user})
    if group:
        subjects.append({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                         "name": group})
    api.create(RB_PATH.format(ns=ns), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects})
    return name


def shipped_source_role(api: Api) -> str | None:
    """The ClusterRole deploy/ ships for cloning out of a namespace: the one labelled as
    ours whose only grant is create on datavolumes/source (not the aggregated
    admin/edit/view roles, which also carry it, as CDI's do)."""
    roles = api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles",
                    labelSelector="cdi.kubevirt.io")["items"]
    for r in roles:
        rules = r.get("rules") or []
        grants = {(g, res, v) for rule in rules for g in rule.get("apiGroups", [])
                  for res in rule.get("resources", []) for v in rule.get("verbs", [])}
        aggregated = any(k.startswith("rbac.authorization.k8s.io/aggregate-to")
                         for k in r["metadata"].get("labels", {}))
        if grants and not aggregated and ("cdi.kubevirt.io", "datavolumes/source",
                                          "create") in grants:
            return str(r["metadata"]["name"])
    return None


def grant_clone_from(api: Api, ns: str, *, user: str | None = None,
                     group: str | None = None,
                     sa: tuple[str, str] | None = None) -> tuple[str, str]:
    """Let `user`/`group` clone out of `ns` with one RoleBinding: to the shipped
    ClusterRole when deploy/ has one, else to a Role with the same single rule."""
    role = shipped_source_role(api)
    if role is not None:
        bind(api, ns, "ClusterRole", role, user=user, group=group, sa=sa)
        return "ClusterRole", role
    name = "e2e-datavolume-cloner"
    with contextlib.suppress(ApiError):
        api.create(ROLE_PATH.format(ns=ns), {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": [SOURCE_RULE]})
    bind(api, ns, "Role", name, user=user, group=group, sa=sa)
    return "Role", name


DV_CREATOR = "e2e-datavolume-creator"


def let_create_dvs(api: Api, ns: str, *, user: str | None = None, group: str | None = None,
                   sa: tuple[str, str] | None = None) -> None:
    """The least a tenant needs in its own namespace to make DataVolumes: create and read
    them, nothing else (no datavolumes/source, no pods): a same-namespace clone needs
    no more."""
    with contextlib.suppress(ApiError):
        api.create(ROLE_PATH.format(ns=ns), {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": DV_CREATOR},
            "rules": [{"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"],
                       "verbs": ["create", "get", "list", "watch", "delete"]}]})
    bind(api, ns, "Role", DV_CREATOR, user=user, group=group, sa=sa)


def allowed(api: Api, user: str, ns: str, resource: str, verb: str = "create",
            sub: str = "", group: str = "cdi.kubevirt.io") -> bool:
    """What the real authorizer answers a SubjectAccessReview for `user`."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"],
                     "resourceAttributes": {"namespace": ns, "verb": verb, "group": group,
                                            "resource": resource, "subresource": sub}}}
    return bool(api.create("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                           body)["status"].get("allowed"))


def wait_allowed(api: Api, user: str, ns: str, resource: str, verb: str = "create",
                 sub: str = "", group: str = "cdi.kubevirt.io") -> None:
    """RBAC changes reach the authorizer's cache asynchronously: wait until a
    SubjectAccessReview agrees before acting on them."""
    wait_for(f"{user} may {verb} {resource}/{sub} in {ns}",
             lambda: allowed(api, user, ns, resource, verb, sub, group), timeout=30)


# -- namespaces ----------------------------------------------------------------------------

class Namespaces:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.made: list[str] = []

    def new(self, prefix: str = "cl") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": name}})
        wait_for("default SA", lambda: self.api.get_or_none(
            f"/api/v1/namespaces/{name}/serviceaccounts/default"), timeout=30)
        self.made.append(name)
        return name

    def cleanup(self) -> None:
        for ns in self.made:
            with contextlib.suppress(ApiError):
                self.api.delete(f"/api/v1/namespaces/{ns}")


# -- contents -------------------------------------------------------------------------------

def image_bytes(length: int, seed: int) -> bytes:
    """`length` bytes shaped like a disk: per MiB a random block, a compressible block,
    or a hole, with small islands of data inside some holes (4 KiB, unaligned to MiB)."""
    rnd = random.Random(seed)
    out = bytearray(length)
    for off in range(0, length, MiB):
        n = min(MiB, length - off)
        kind = rnd.randrange(4)
        if kind == 0:
            out[off:off + n] = rnd.randbytes(n)
        elif kind == 1:
            line = f"block {off:#x} of seed {seed} ".encode()
            out[off:off + n] = (line * (n // len(line) + 1))[:n]
        elif kind == 2 and n > 8192:
            island = rnd.randrange(0, n - 4096) & ~511
            out[off + island:off + island + 4096] = rnd.randbytes(4096)
    if length:
        out[-1] = 0x5A  # the last byte is data: a lost tail shows
    return bytes(out)


def write_sparse(path: Path | str, data: bytes, *, truncate: bool) -> None:
    """Write only the non-zero MiB blocks of `data` (holes stay holes), then fsync."""
    flags = os.O_WRONLY | (os.O_CREAT if truncate else 0)
    fd = os.open(path, flags, 0o644)
    try:
        if truncate:
            os.ftruncate(fd, len(data))
        zero = bytes(MiB)
        for off in range(0, len(data), MiB):
            block = data[off:off + MiB]
            if block != zero[:len(block)]:
                os.pwrite(fd, block, off)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Source:
    ns: str
    name: str
    mode: str
    size: str
    data: bytes
    """The bytes a clone must reproduce (zeros follow, to the end of the target)."""
    logical: int
    """The source's size as a clone sees it: disk.img's length, or the whole device."""


def pvc_manifest(name: str, size: str, mode: str = "Filesystem", sc: str | None = None,
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "volumeMode": mode,
                            "resources": {"requests": {"storage": size}}}
    if sc:
        spec["storageClassName"] = sc
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def bound(api: Api, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(f"PVC {ns}/{name} Bound", lambda: (
        p if (p := api.get_or_none(f"{PVC_PATH.format(ns=ns)}/{name}"))
        and p.get("status", {}).get("phase") == "Bound" else None), timeout=timeout)


def make_source(cluster: Any, ns: str, name: str, *, mode: str = "Filesystem",
                size: str = "64Mi", data_len: int = 32 * MiB, sc: str | None = None,
                seed: int = 1) -> Source:
    """A bare PVC holding a sparse image: `disk.img` of `data_len` bytes (Filesystem) or
    the device's first `data_len` bytes (Block; the rest of a fresh device reads zeros)."""
    api = cluster.api()
    api.create(PVC_PATH.format(ns=ns), pvc_manifest(name, size, mode, sc))
    bound(api, ns, name)
    data = image_bytes(data_len, seed)
    path = Path(cluster.pv_path(ns, name))
    if mode == "Filesystem":
        write_sparse(path / "disk.img", data, truncate=True)
        logical = data_len
    else:
        write_sparse(path, data, truncate=False)
        with open(path, "rb") as dev:
            logical = dev.seek(0, os.SEEK_END)
    return Source(ns, name, mode, size, data, logical)


def target_path(cluster: Any, ns: str, claim: str) -> Path:
    p = Path(cluster.pv_path(ns, claim))
    return p / "disk.img" if p.is_dir() else p


def assert_holds(cluster: Any, ns: str, claim: str, src: Source) -> int:
    """The target holds exactly the source's bytes, then only zeros, and is at least as
    long as the source; returns the target's length."""
    data = src.data
    path = target_path(cluster, ns, claim)
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        length = f.tell()
        assert length >= src.logical, (
            f"{ns}/{claim}: {path.name} has {length} bytes, the source {src.logical}")
        f.seek(0)
        off = 0
        while off < len(data):
            got = f.read(min(4 * MiB, len(data) - off))
            want = data[off:off + len(got)]
            if got != want:
                first = next(i for i, (a, b) in enumerate(zip(got, want, strict=True))
                             if a != b)
                raise AssertionError(f"{ns}/{claim}: differs from its source at byte "
                                     f"{off + first}")
            off += len(got)
        zero = bytes(4 * MiB)
        while chunk := f.read(4 * MiB):
            if chunk != zero[:len(chunk)]:
                first = next(i for i, b in enumerate(chunk) if b)
                raise AssertionError(f"{ns}/{claim}: non-zero byte at {off + first}, "
                                     f"past the source's {len(data)} bytes")
            off += len(chunk)
    return length


# -- DataVolumes -----------------------------------------------------------------------------

def clone_dv(name: str, source: dict[str, Any], *, size: str | None = "64Mi",
             mode: str | None = None, sc: str | None = None, storage: bool = True,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A clone DataVolume; `source` is `{"pvc": {...}}` or `{"sourceRef": {...}}`."""
    claim: dict[str, Any] = {}
    if size:
        claim["resources"] = {"requests": {"storage": size}}
    if mode:
        claim["volumeMode"] = mode
    if sc:
        claim["storageClassName"] = sc
    if not storage:
        claim["accessModes"] = ["ReadWriteOnce"]
    spec: dict[str, Any] = {("storage" if storage else "pvc"): claim}
    if "sourceRef" in source:
        spec["sourceRef"] = source["sourceRef"]
    else:
        spec["source"] = source
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def pvc_source(src: Source) -> dict[str, Any]:
    return {"pvc": {"namespace": src.ns, "name": src.name}}


def create_dv_as(api: Api, ns: str, dv: dict[str, Any]) -> dict[str, Any]:
    """Create through admission, retrying only a webhook that is not answering yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return api.create(DV_PATH.format(ns=ns), dv)
        except ApiError as exc:
            if "failed calling webhook" not in exc.body or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Clones:
    cluster: Any
    cdi: Any
    ns: Namespaces = field(init=False)

    def __post_init__(self) -> None:
        self.ns = Namespaces(self.api)

    @property
    def api(self) -> Api:
        return self.cluster.api()  # type: ignore[no-any-return]

    def node_names(self) -> list[str]:
        names = getattr(self.cluster, "node_names", None)
        return list(names) if names else [self.cluster.node_name]

    def dv(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.api.get_or_none(f"{DV_PATH.format(ns=ns)}/{name}")

    def pvc(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.api.get_or_none(f"{PVC_PATH.format(ns=ns)}/{name}")

    def reasons(self, ns: str, name: str) -> list[tuple[str, str]]:
        """(reason, message) of the DataVolume's conditions and of the events on the
        DataVolume and on its PVC."""
        found: list[tuple[str, str]] = []
        dv = self.dv(ns, name) or {}
        for c in dv.get("status", {}).get("conditions", []):
            found.append((c.get("reason", ""), c.get("message", "")))
        for e in self.api.get(f"/api/v1/namespaces/{ns}/events")["items"]:
            if e["involvedObject"].get("name") == name:
                found.append((e.get("reason", ""), e.get("message", "")))
        return found

    def wait_reason(self, ns: str, name: str, reason: str, timeout: float = 90) -> str:
        """The message of the first condition or event with `reason`."""
        def check() -> str | None:
            return next((m or reason for r, m in self.reasons(ns, name) if r == reason), None)
        try:
            return wait_for(f"{ns}/{name} says {reason}", check, timeout=timeout)
        except AssertionError:
            raise AssertionError(self.diagnose(ns, name, f"no {reason}")) from None

    def wait_phase(self, ns: str, name: str, *phases: str, timeout: float = 180,
                   src_ns: str | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            dv = self.dv(ns, name)
            return dv if dv and dv.get("status", {}).get("phase") in phases else None
        try:
            return wait_for(f"DataVolume {ns}/{name} in {phases}", check, timeout=timeout)
        except AssertionError:
            raise AssertionError(self.diagnose(ns, name, f"not in {phases}",
                                               src_ns=src_ns)) from None

    def diagnose(self, ns: str, name: str, what: str, src_ns: str | None = None) -> str:
        dv = self.dv(ns, name) or {}
        pvc = self.pvc(ns, name) or {}
        uid = pvc.get("metadata", {}).get("uid", "")
        lines = [f"DataVolume {ns}/{name} {what}:",
                 json.dumps(dv.get("status"), indent=1),
                 "PVC annotations: " + json.dumps(pvc.get("metadata", {}).get("annotations"),
                                                  indent=1),
                 "events: " + "; ".join(f"{r}: {m}" for r, m in self.reasons(ns, name))]
        for n in {ns, src_ns or ns}:
            lines.append(self.cluster.kubectl("-n", n, "get", "pods", "-o", "wide",
                                              check=False).stdout)
        lines.append("upload server log:\n" + self.cluster.logs(
            ns, upload.upload_resource_name(name))[-2000:])
        if uid:
            lines.append("cloner log:\n" + self.cluster.logs(
                src_ns or ns, clone.source_pod_name(uid))[-2000:])
        lines.append("controller log:\n" + self.cdi.controller_log()[-3000:])
        return "\n".join(lines)

    def clone_objects(self, ns: str) -> list[str]:
        """The clone's pods and Secrets in namespace `ns` (by the transfer label)."""
        sel = f"{ann.TRANSFER_LABEL}={clone.TRANSFER_KIND}"
        found = []
        for kind in ("pods", "secrets", "services"):
            items = self.api.get(f"/api/v1/namespaces/{ns}/{kind}", labelSelector=sel)["items"]
            found += [f"{kind}/{i['metadata']['name']}" for i in items]
        return found


# -- watching where the pods ran ------------------------------------------------------------

class PodNodes:
    """Record, while it runs, the node of every pod that appears in some namespaces
    (a clone's pods are deleted once it ends, so they must be seen while they live)."""

    def __init__(self, api: Api, namespaces: list[str]) -> None:
        self.api, self.namespaces = api, namespaces
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for ns in self.namespaces:
                with contextlib.suppress(Exception):
                    for p in self.api.get(f"/api/v1/namespaces/{ns}/pods")["items"]:
                        node = p["spec"].get("nodeName")
                        if node:
                            self.seen[f"{ns}/{p['metadata']['name']}"] = node
            self._stop.wait(0.2)

    def __enter__(self) -> PodNodes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


# -- pausing the controller's reconciling (its webhook keeps answering) --------------------

def _controller_pods(api: Api) -> list[dict[str, Any]]:
    return api.get("/api/v1/namespaces/cdi/pods",  # type: ignore[no-any-return]
                   labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]


def _restarts(api: Api) -> int:
    return sum(c.get("restartCount", 0) for p in _controller_pods(api)
               for c in p.get("status", {}).get("containerStatuses", []))


def _ready(api: Api) -> bool:
    d = api.get_or_none(DEPLOY) or {}
    return d.get("status", {}).get("readyReplicas", 0) >= d.get("spec", {}).get("replicas", 1)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def controller_paused(api: Api, timeout: float = 120) -> Iterator[None]:
    """Hold the controller's leader Lease: the leader loses it and restarts, the new
    process serves admission (it does so before it competes) but never reconciles until
    the Lease is released. Nothing else in the cluster changes."""
    before = _restarts(api)

    def take() -> bool:
        lease = api.get_or_none(LEASE)
        spec = {"holderIdentity": PAUSED_BY, "leaseDurationSeconds": 3600,
                "acquireTime": _now(), "renewTime": _now(), "leaseTransitions": 0}
        try:
            if lease is None:
                api.create(LEASE.rsplit("/", 1)[0], {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": LEASE.rsplit("/", 1)[1]}, "spec": spec})
            else:
                lease["spec"] = spec
                api.request("PUT", LEASE, body=lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    wait_for("the controller's Lease taken", take, timeout=30)
    try:
        wait_for("the controller restarted without the Lease",
                 lambda: _restarts(api) > before and _ready(api), timeout=timeout)
        yield
    finally:
        api.merge_patch(LEASE, {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1}})
        wait_for("a controller holds the Lease again", lambda: (
            api.get(LEASE)["spec"].get("holderIdentity") not in (None, "", PAUSED_BY)),
            timeout=timeout)


def run_parallel(fns: list[Callable[[], Any]], timeout: float) -> list[Any]:
    results: list[Any] = [None] * len(fns)

    def one(i: int) -> None:
        try:
            results[i] = fns[i]()
        except BaseException as exc:  # reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results

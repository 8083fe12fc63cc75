"""Fixtures for the controller's tests on the real control plane.

`cdi`: the product installed exactly as users install it (`kubectl apply -k deploy/`),
once per session, with the controller Deployment Available. `images`: the in-cluster
nginx image server with a reference disk in several formats.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import imagefactory
from tests.cluster.helpers import wait_for
from tests.controller.e2e import imageserver

ROOT = Path(__file__).resolve().parents[3]
DV_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
MiB = 1 << 20


@dataclass(frozen=True)
class Cdi:
    cluster: Any

    @property
    def api(self) -> Any:
        return self.cluster.api()

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> Any:
        return self.cluster.kubectl(*args, check=check, input=input)

    def create_dv(self, ns: str, dv: dict[str, Any]) -> dict[str, Any]:
        # Right after a controller pod goes (another test killed it), the Service may
        # still route the webhook call to it for a moment; clients retry such 500s.
        deadline = time.monotonic() + 20
        while True:
            try:
                return self.api.create(DV_PATH.format(ns=ns), dv)  # type: ignore[no-any-return]
            except Exception as exc:
                if "failed calling webhook" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def dv(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.api.get_or_none(f"{DV_PATH.format(ns=ns)}/{name}")  # type: ignore[no-any-return]

    def wait_phase(self, ns: str, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            dv = self.dv(ns, name)
            return dv if dv and dv.get("status", {}).get("phase") in phases else None
        try:
            return wait_for(f"DataVolume {ns}/{name} in {phases}", check, timeout=timeout)
        except AssertionError:
            dv = self.dv(ns, name)
            pods = self.kubectl("-n", ns, "get", "pods", "-o", "wide", check=False).stdout
            logs = self.cluster.logs(ns, f"importer-{name}")
            raise AssertionError(
                f"DataVolume {ns}/{name} not in {phases}:\n"
                f"{json.dumps((dv or {}).get('status'), indent=1)}\n{pods}\nimporter log:\n"
                f"{logs[-3000:]}\ncontroller log:\n{self.controller_log()[-3000:]}") from None

    def controller_log(self) -> str:
        pods = self.api.get("/api/v1/namespaces/cdi/pods",
                            labelSelector="cdi.kubevirt.io=cdi-deployment")["items"]
        return "\n".join(self.cluster.logs("cdi", p["metadata"]["name"]) for p in pods)

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        items = self.api.get(f"/api/v1/namespaces/{ns}/events")["items"]
        return [e for e in items if e["involvedObject"].get("name") == name]


def deployment_available(api: Any) -> bool:
    d = api.get_or_none("/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment")
    conds = (d or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conds) and (
        d["status"].get("readyReplicas", 0) >= d["spec"]["replicas"])


@pytest.fixture(scope="session")
def cdi(cluster: Any) -> Iterator[Cdi]:
    start = time.monotonic()
    cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    api = cluster.api()
    wait_for("cdi-deployment Available", lambda: deployment_available(api), timeout=60)
    # The webhook answers once its CA is in place; the first DataVolume must not race it.
    wait_for("webhook caBundle", lambda: api.get(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
        "cdi-api-datavolume-validate")["webhooks"][0]["clientConfig"].get("caBundle"),
        timeout=30)
    print(f"cdi deployed and Available in {time.monotonic() - start:.1f}s")
    yield Cdi(cluster)


@dataclass(frozen=True)
class Images:
    server: imageserver.ImageServer
    reference: imagefactory.Reference
    raw_sha256: str
    big_size: int

    def url(self, name: str, *, tls: bool = False, where: str = "") -> str:
        base = self.server.https if tls else self.server.http
        return f"{base}/{where}{name}"


@pytest.fixture(scope="session")
def images(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    work = tmp_path_factory.mktemp("images")
    ref = imagefactory.make_reference(work, 8 * MiB)
    qcow2 = imagefactory.convert(ref, "qcow2")
    xz = work / "reference.raw.xz"
    with ref.path.open("rb") as src, lzma.open(xz, "wb", preset=0) as dst:
        dst.write(src.read())
    big = work / "big.raw"
    big_size = 64 * MiB
    with big.open("wb") as f:
        f.truncate(big_size)
        f.write(b"\x01" * MiB)  # some data, so the import takes time at the slow rate
    ns = f"images-{uuid.uuid4().hex[:6]}"
    api = cluster.api()
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    wait_for("default SA", lambda: api.get_or_none(
        f"/api/v1/namespaces/{ns}/serviceaccounts/default"), timeout=30)
    server = imageserver.start(api, ns, work / "docroot", slow_rate="4m")
    server.publish(ref.path, "disk.raw")
    server.publish(qcow2, "disk.qcow2")
    server.publish(xz, "disk.raw.xz")
    server.publish(big, "big.raw")
    yield Images(server, ref, imagefactory.sha256_of(ref.path), big_size)
    api.delete(f"/api/v1/namespaces/{ns}")


def dv_manifest(name: str, source: dict[str, Any], *, size: str = "64Mi",
                storage: bool = True, mode: str | None = None, sc: str | None = None,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
    claim: dict[str, Any] = {"resources": {"requests": {"storage": size}}}
    if mode:
        claim["volumeMode"] = mode
    if sc:
        claim["storageClassName"] = sc
    if not storage:
        claim["accessModes"] = ["ReadWriteOnce"]
    return {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"source": source, ("storage" if storage else "pvc"): claim},
    }


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = length
        while left:
            chunk = f.read(min(left, MiB))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def disk_of(cluster: Any, ns: str, claim: str) -> Path:
    p = Path(cluster.pv_path(ns, claim))
    return p / "disk.img" if p.is_dir() else p

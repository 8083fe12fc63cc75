"""The clone of one target PVC (legacy `k8s.io/CloneRequest` API) with the real controller.

The controller deployed from deploy/ on the real control plane: its refusals leave the
source namespace untouched, it waits for a source that appears later and for a writer to
let go, it makes the source pod in the source namespace once a valid clone token says
so, and it cleans the source namespace when the target goes away. The byte-for-byte
clone needs the cloner and the upload server's clone mode (helper B's branch).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from cdicontract import clone, clonetoken
from tests.cluster.helpers import pod, pvc, wait_for
from tests.controller.e2e.conftest import MiB, disk_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
P = "cdi.kubevirt.io/"
REASON = P + "storage.condition.running.reason"
MESSAGE = P + "storage.condition.running.message"
PVCS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
FINALIZER = "cdi.kubevirt.io/cloneSource"


@pytest.fixture
def source_ns(cluster: Any) -> Iterator[str]:
    api = cluster.api()
    name = f"src-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": name}})
    wait_for("default SA", lambda: api.get_or_none(
        f"/api/v1/namespaces/{name}/serviceaccounts/default"), timeout=30)
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


def make_pvc(api: Any, ns: str, name: str, *, size: str = "64Mi", source: str | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    body = pvc(name, size)
    body["metadata"]["annotations"] = dict(annotations or {})
    if source is not None:
        body["metadata"]["annotations"][clone.CLONE_REQUEST_ANNOTATION] = source
    return api.create(PVCS.format(ns=ns), body)  # type: ignore[no-any-return]


def get_pvc(api: Any, ns: str, name: str) -> dict[str, Any] | None:
    return api.get_or_none(f"{PVCS.format(ns=ns)}/{name}")  # type: ignore[no-any-return]


def annotations(api: Any, ns: str, name: str) -> dict[str, str]:
    return (get_pvc(api, ns, name) or {}).get("metadata", {}).get("annotations") or {}


def wait_reason(cdi: Any, ns: str, name: str, reason: str, timeout: float = 30
                ) -> dict[str, str]:
    def check() -> dict[str, str] | None:
        a = annotations(cdi.api, ns, name)
        return a if a.get(REASON) == reason else None
    try:
        return wait_for(f"{ns}/{name} says {reason}", check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{annotations(cdi.api, ns, name)}\ncontroller log:\n"
                             f"{cdi.controller_log()[-3000:]}") from None


def wait_bound(api: Any, ns: str, name: str) -> None:
    wait_for(f"{ns}/{name} Bound", lambda: (get_pvc(api, ns, name) or {}).get(
        "status", {}).get("phase") == "Bound", timeout=30)


def pods_in(api: Any, ns: str) -> list[str]:
    return sorted(p["metadata"]["name"]
                  for p in api.get(f"/api/v1/namespaces/{ns}/pods")["items"])


def cdi_secrets_in(api: Any, ns: str) -> list[str]:
    items = api.get(f"/api/v1/namespaces/{ns}/secrets")["items"]
    return sorted(s["metadata"]["name"] for s in items
                  if P + "owner-uid" in (s["metadata"].get("labels") or {}))


def sign_token(api: Any, src: tuple[str, str], dst: tuple[str, str]) -> str:
    """What the admission webhook would record: a token signed with the controller's key."""
    secret = api.get("/api/v1/namespaces/cdi/secrets/cdi-clone-token-key")
    pem = base64.b64decode(secret["data"]["id_rsa"])
    key = serialization.load_pem_private_key(pem, password=None)
    return clonetoken.sign(key, clonetoken.CloneRef(*src, *dst))  # type: ignore[arg-type]


def write_disk(cluster: Any, ns: str, name: str, size: int) -> str:
    """A sparse image with data at its start, middle and end; its sha256."""
    path = disk_of(cluster, ns, name)
    with path.open("wb") as f:
        f.truncate(size)
        for offset in (0, size // 2, size - MiB):
            f.seek(offset)
            f.write(os.urandom(MiB))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip_tokens_while_waiting(cdi: Any, ns: str, name: str, source: str,
                                replacement: str | None) -> None:
    """The PVC webhook signs a token for whoever may clone (the admin here), so a PVC
    without one only exists when the webhook was down, or after someone edits the PVC:
    this does the latter while the clone waits for its source."""
    make_pvc(cdi.api, ns, name, source=source)
    a = wait_reason(cdi, ns, name, "CloneWithoutSource")
    assert clone.TOKEN_ANNOTATION in a  # the webhook signed one at admission
    cdi.api.merge_patch(f"{PVCS.format(ns=ns)}/{name}", {"metadata": {"annotations": {
        clone.TOKEN_ANNOTATION: replacement, clone.EXTENDED_TOKEN_ANNOTATION: replacement}}})


def test_cross_namespace_without_token_is_refused_and_the_source_untouched(
        cdi, cluster, namespace, source_ns):
    _strip_tokens_while_waiting(cdi, namespace, "copy", f"{source_ns}/golden", None)
    make_pvc(cdi.api, source_ns, "golden")
    wait_bound(cdi.api, source_ns, "golden")
    a = wait_reason(cdi, namespace, "copy", "CloneValidationFailed")
    assert a[MESSAGE] == "The clone doesn't meet the validation requirements: no clone token"
    wait_for("the refusal's event", lambda: [
        e for e in cdi.events(namespace, "copy") if e["reason"] == "CloneValidationFailed"],
        timeout=10)
    assert pods_in(cdi.api, source_ns) == []
    assert cdi_secrets_in(cdi.api, source_ns) == []
    assert pods_in(cdi.api, namespace) == []
    assert FINALIZER not in (get_pvc(cdi.api, namespace, "copy") or {})["metadata"].get(
        "finalizers", [])


def test_a_forged_token_is_refused_too(cdi, namespace, source_ns):
    token = sign_token(cdi.api, (source_ns, "golden"), (namespace, "other"))
    _strip_tokens_while_waiting(cdi, namespace, "copy", f"{source_ns}/golden", token)
    make_pvc(cdi.api, source_ns, "golden")
    a = wait_reason(cdi, namespace, "copy", "CloneValidationFailed")
    assert a[MESSAGE].endswith(": clone token is for another target")
    assert pods_in(cdi.api, source_ns) == []


def test_a_valid_token_puts_the_source_pod_in_the_source_namespace_and_target_deletion_removes_it(
        cdi, cluster, namespace, source_ns):
    make_pvc(cdi.api, source_ns, "golden")
    wait_bound(cdi.api, source_ns, "golden")
    token = sign_token(cdi.api, (source_ns, "golden"), (namespace, "copy"))
    target = make_pvc(cdi.api, namespace, "copy", source=f"{source_ns}/golden",
                      annotations={clone.TOKEN_ANNOTATION: token})
    uid = target["metadata"]["uid"]
    source_pod = f"/api/v1/namespaces/{source_ns}/pods/{clone.source_pod_name(uid)}"
    body = wait_for("the source pod", lambda: cdi.api.get_or_none(source_pod), timeout=60)
    assert body["metadata"]["labels"][P + "owner-uid"] == uid
    assert body["metadata"]["labels"][P + "transfer"] == "clone"
    volume = body["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert volume == {"claimName": "golden", "readOnly": True}
    a = annotations(cdi.api, namespace, "copy")
    ref = clonetoken.CloneRef(source_ns, "golden", namespace, "copy")
    secret = cdi.api.get("/api/v1/namespaces/cdi/secrets/cdi-clone-token-key")
    public = serialization.load_pem_public_key(base64.b64decode(secret["data"]["id_rsa.pub"]))
    clonetoken.verify(a[clone.EXTENDED_TOKEN_ANNOTATION], public, ref)  # type: ignore[arg-type]
    assert FINALIZER in get_pvc(cdi.api, namespace, "copy")["metadata"]["finalizers"]
    assert clone.client_secret_name(uid) in cdi_secrets_in(cdi.api, source_ns)

    cdi.api.delete(f"{PVCS.format(ns=namespace)}/copy")
    wait_for("target gone", lambda: get_pvc(cdi.api, namespace, "copy") is None, timeout=60)
    wait_for("source pod gone", lambda: cdi.api.get_or_none(source_pod) is None, timeout=60)
    assert cdi_secrets_in(cdi.api, source_ns) == []


def test_a_source_that_appears_later_is_waited_for(cdi, namespace):
    make_pvc(cdi.api, namespace, "copy", source=f"{namespace}/later")
    a = wait_reason(cdi, namespace, "copy", "CloneWithoutSource")
    assert a[MESSAGE] == "The source pvc later doesn't exist"
    assert [e["message"] for e in cdi.events(namespace, "copy")
            if e["reason"] == "CloneWithoutSource"] == ["The source pvc later doesn't exist"]
    assert pods_in(cdi.api, namespace) == []
    make_pvc(cdi.api, namespace, "later")
    server = wait_for("the target's upload server", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/cdi-upload-copy"), timeout=60)
    assert server["metadata"]["labels"][P + "transfer"] == "clone"


def test_a_source_in_use_by_a_writer_waits_until_it_is_gone(cdi, namespace):
    make_pvc(cdi.api, namespace, "golden")
    writer = pod("writer", "sleep 3600", volumes=[{
        "name": "d", "persistentVolumeClaim": {"claimName": "golden"}}],
        container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]})
    cdi.api.create(f"/api/v1/namespaces/{namespace}/pods", writer)
    make_pvc(cdi.api, namespace, "copy", source=f"{namespace}/golden")
    a = wait_reason(cdi, namespace, "copy", "CloneSourceInUse", timeout=60)
    assert a[MESSAGE] == f"pod {namespace}/writer using PersistentVolumeClaim golden"
    assert pods_in(cdi.api, namespace) == ["writer"]
    cdi.api.delete(f"/api/v1/namespaces/{namespace}/pods/writer")
    wait_for("the target's upload server", lambda: cdi.api.get_or_none(
        f"/api/v1/namespaces/{namespace}/pods/cdi-upload-copy"), timeout=60)


def test_same_namespace_filesystem_clone_is_byte_identical(cdi, cluster, namespace):
    make_pvc(cdi.api, namespace, "golden")
    wait_bound(cdi.api, namespace, "golden")
    digest = write_disk(cluster, namespace, "golden", 48 * MiB)
    target = make_pvc(cdi.api, namespace, "copy", source=f"{namespace}/golden")

    def done() -> dict[str, str] | None:
        a = annotations(cdi.api, namespace, "copy")
        return a if a.get(P + "storage.pod.phase") in ("Succeeded", "Failed") else None
    a = wait_for("the clone", done, timeout=120)
    assert a[P + "storage.pod.phase"] == "Succeeded", a
    assert a[clone.CLONE_OF_ANNOTATION] == "true"
    assert a[MESSAGE] == "Clone Complete"
    copied = disk_of(cluster, namespace, "copy")
    assert hashlib.sha256(copied.read_bytes()[:48 * MiB]).hexdigest() == digest
    wait_for("cleanup", lambda: pods_in(cdi.api, namespace) == [], timeout=60)
    assert cdi_secrets_in(cdi.api, namespace) == []
    wait_for("finalizer off", lambda: FINALIZER not in (get_pvc(
        cdi.api, namespace, "copy") or {})["metadata"].get("finalizers", []), timeout=30)
    assert [e["message"] for e in cdi.events(namespace, "copy")
            if e["reason"] == "CloneSucceeded"] == [
        f"Successfully cloned from {namespace}/golden into {namespace}/copy"]
    assert target["metadata"]["uid"]


def test_no_clone_starts_from_a_source_being_deleted(cdi, namespace):
    make_pvc(cdi.api, namespace, "golden")
    holder = pod("holder", "sleep 3600", volumes=[{
        "name": "d", "persistentVolumeClaim": {"claimName": "golden"}}],
        container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]})
    cdi.api.create(f"/api/v1/namespaces/{namespace}/pods", holder)
    wait_for("holder running", lambda: cdi.api.get(
        f"/api/v1/namespaces/{namespace}/pods/holder")["status"].get("phase") == "Running",
        timeout=60)
    cdi.api.delete(f"{PVCS.format(ns=namespace)}/golden")  # pvc-protection keeps it
    wait_for("golden deleting", lambda: (get_pvc(cdi.api, namespace, "golden") or {})[
        "metadata"].get("deletionTimestamp"), timeout=20)
    make_pvc(cdi.api, namespace, "copy", source=f"{namespace}/golden")
    a = wait_reason(cdi, namespace, "copy", "CloneSourceDeleting")
    assert a[MESSAGE] == (f"The source pvc {namespace}/golden is being deleted; no clone "
                          "starts from it")
    assert pods_in(cdi.api, namespace) == ["holder"]


def test_a_source_deleted_mid_clone_is_kept_until_the_clone_is_done(cdi, cluster, namespace):
    make_pvc(cdi.api, namespace, "golden", size="256Mi")
    wait_bound(cdi.api, namespace, "golden")
    digest = write_disk(cluster, namespace, "golden", 200 * MiB)
    target = make_pvc(cdi.api, namespace, "copy", size="256Mi",
                      source=f"{namespace}/golden")
    source_pod = f"/api/v1/namespaces/{namespace}/pods/" \
                 f"{clone.source_pod_name(target['metadata']['uid'])}"
    wait_for("the source pod running", lambda: (cdi.api.get_or_none(source_pod) or {}).get(
        "status", {}).get("phase") in ("Running", "Succeeded"), timeout=60)
    copied_path = disk_of(cluster, namespace, "copy")
    cdi.api.delete(f"{PVCS.format(ns=namespace)}/golden")

    def done() -> dict[str, str] | None:
        a = annotations(cdi.api, namespace, "copy")
        return a if a.get(P + "storage.pod.phase") in ("Succeeded", "Failed") else None
    a = wait_for("the clone", done, timeout=120)
    assert a[P + "storage.pod.phase"] == "Succeeded", a
    assert hashlib.sha256(copied_path.read_bytes()[:200 * MiB]).hexdigest() == digest
    wait_for("the source goes once its clone is done",
             lambda: get_pvc(cdi.api, namespace, "golden") is None, timeout=60)


def test_cross_namespace_block_to_filesystem_clone_with_a_valid_token(
        cdi, cluster, namespace, source_ns):
    body = pvc("golden", "64Mi", mode="Block")
    cdi.api.create(PVCS.format(ns=source_ns), body)
    wait_bound(cdi.api, source_ns, "golden")
    device = cluster.pv_path(source_ns, "golden")
    with open(device, "r+b") as f:
        for offset in (0, 20 * MiB, 63 * MiB):
            f.seek(offset)
            f.write(os.urandom(MiB))
    with open(device, "rb") as f:
        digest = hashlib.sha256(f.read(64 * MiB)).hexdigest()
    token = sign_token(cdi.api, (source_ns, "golden"), (namespace, "copy"))
    make_pvc(cdi.api, namespace, "copy", size="80Mi", source=f"{source_ns}/golden",
             annotations={clone.TOKEN_ANNOTATION: token})

    def done() -> dict[str, str] | None:
        a = annotations(cdi.api, namespace, "copy")
        return a if a.get(P + "storage.pod.phase") in ("Succeeded", "Failed") else None
    a = wait_for("the clone", done, timeout=120)
    assert a[P + "storage.pod.phase"] == "Succeeded", a
    copied = disk_of(cluster, namespace, "copy")
    with copied.open("rb") as f:
        assert hashlib.sha256(f.read(64 * MiB)).hexdigest() == digest
    wait_for("the source namespace is clean", lambda: pods_in(cdi.api, source_ns) == []
             and cdi_secrets_in(cdi.api, source_ns) == [], timeout=60)


def test_a_legacy_target_smaller_than_its_source_is_refused(cdi, namespace):
    make_pvc(cdi.api, namespace, "golden", size="128Mi")
    wait_bound(cdi.api, namespace, "golden")
    make_pvc(cdi.api, namespace, "copy", size="64Mi", source=f"{namespace}/golden")
    a = wait_reason(cdi, namespace, "copy", "ErrIncompatiblePVC")
    assert a[MESSAGE] == "target resources requests storage size is smaller than the source"
    wait_for("the refusal's event", lambda: [
        e for e in cdi.events(namespace, "copy") if e["reason"] == "ErrIncompatiblePVC"],
        timeout=10)
    assert pods_in(cdi.api, namespace) == []


def test_ten_legacy_clones_of_one_source_at_once(cdi, cluster, namespace):
    make_pvc(cdi.api, namespace, "golden", size="32Mi")
    wait_bound(cdi.api, namespace, "golden")
    digest = write_disk(cluster, namespace, "golden", 24 * MiB)
    names = [f"copy{i}" for i in range(10)]
    for n in names:
        make_pvc(cdi.api, namespace, n, size="32Mi", source=f"{namespace}/golden")

    def all_done() -> dict[str, str] | None:
        phases = {n: annotations(cdi.api, namespace, n).get(P + "storage.pod.phase", "")
                  for n in names}
        over = all(p in ("Succeeded", "Failed") for p in phases.values())
        return phases if over else None
    phases = wait_for("ten clones", all_done, timeout=300)
    assert set(phases.values()) == {"Succeeded"}, phases
    for n in names:
        copied = disk_of(cluster, namespace, n)
        with copied.open("rb") as f:
            assert hashlib.sha256(f.read(24 * MiB)).hexdigest() == digest, n
    wait_for("cleanup", lambda: pods_in(cdi.api, namespace) == [], timeout=120)


def test_a_datavolume_deleted_mid_clone_leaves_nothing_behind(cdi, cluster, namespace):
    """The DataVolume goes first, so its PVC's source pod routes nowhere; the target still
    cleans up and lets go (the plan looks again while its source pod exists)."""
    make_pvc(cdi.api, namespace, "golden", size="256Mi")
    wait_bound(cdi.api, namespace, "golden")
    write_disk(cluster, namespace, "golden", 200 * MiB)
    dv = cdi.create_dv(namespace, {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "copy"},
        "spec": {"source": {"pvc": {"namespace": namespace, "name": "golden"}},
                 "pvc": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "256Mi"}}}}})
    target = get_pvc(cdi.api, namespace, "copy")
    if target is None:  # this branch's DataVolume side does not make clone targets
        body = pvc("copy", "256Mi")
        body["metadata"]["annotations"] = {clone.CLONE_REQUEST_ANNOTATION:
                                           f"{namespace}/golden",
                                           clone.CLONE_TYPE_ANNOTATION: "copy"}
        body["metadata"]["ownerReferences"] = [{
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "copy",
            "uid": dv["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
        try:
            target = cdi.api.create(PVCS.format(ns=namespace), body)
        except Exception as exc:  # the DataVolume side made it meanwhile
            if "already exists" not in str(exc):
                raise
            target = get_pvc(cdi.api, namespace, "copy")
    assert target is not None
    source_pod = f"/api/v1/namespaces/{namespace}/pods/" \
                 f"{clone.source_pod_name(target['metadata']['uid'])}"
    body = wait_for("the source pod", lambda: cdi.api.get_or_none(source_pod), timeout=60)
    assert body["metadata"]["labels"][P + "owner-uid"] == dv["metadata"]["uid"]
    cdi.api.delete(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{namespace}/datavolumes/copy")
    wait_for("target gone", lambda: get_pvc(cdi.api, namespace, "copy") is None, timeout=90)
    wait_for("source pod gone", lambda: cdi.api.get_or_none(source_pod) is None, timeout=60)
    wait_for("no CDI pods", lambda: pods_in(cdi.api, namespace) == [], timeout=60)
    assert cdi_secrets_in(cdi.api, namespace) == []
    assert get_pvc(cdi.api, namespace, "golden") is not None

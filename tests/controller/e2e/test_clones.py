"""Clones end to end on the real control plane: admission with real RBAC and real
SubjectAccessReviews for impersonated users, the controller's clone transfer, the cloner
and the upload server in clone mode, and every target read back byte for byte.

Sources are bare PVCs written from this host (clonestack.make_source); users are
impersonated (clonestack.ImpersonatingApi). Cross-namespace tests give the tenant the
built-in `edit` role in its own namespace and, where allowed, one RoleBinding in the
source namespace to the ClusterRole deploy/ ships for `datavolumes/source`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from localcluster.api import ApiError

from cdicontract import clone
from tests.cluster.helpers import wait_for
from tests.controller.e2e.clonestack import (
    DS_PATH,
    PVC_PATH,
    Clones,
    ImpersonatingApi,
    MiB,
    PodNodes,
    allowed,
    assert_holds,
    bind,
    clone_dv,
    controller_paused,
    create_dv_as,
    grant_clone_from,
    let_create_dvs,
    make_source,
    pvc_manifest,
    pvc_source,
    run_parallel,
    shipped_source_role,
    wait_allowed,
)

pytestmark = pytest.mark.cluster

SIZE = "64Mi"
DATA = 32 * MiB


@pytest.fixture(scope="module")
def clones(cdi: Any, cluster: Any) -> Iterator[Clones]:
    c = Clones(cluster, cdi)
    yield c
    c.ns.cleanup()


def new_name(prefix: str = "cl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def tenant(clones: Clones, ns: str) -> tuple[str, ImpersonatingApi]:
    """A user who may create DataVolumes in `ns` and nothing else (yet), and the client
    acting as them."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    let_create_dvs(clones.api, ns, user=user)
    wait_allowed(clones.api, user, ns, "datavolumes")
    return user, ImpersonatingApi(clones.api, user)


def assert_succeeded(clones: Clones, ns: str, name: str, src_ns: str,
                     timeout: float = 240) -> dict[str, Any]:
    dv = clones.wait_phase(ns, name, "Succeeded", "Failed", timeout=timeout, src_ns=src_ns)
    assert dv["status"]["phase"] == "Succeeded", clones.diagnose(ns, name, "Failed", src_ns)
    return dv


# -- same namespace, all four volume-mode combinations -----------------------------------

MODES = [("Filesystem", "Filesystem"), ("Filesystem", "Block"),
         ("Block", "Filesystem"), ("Block", "Block")]


@pytest.mark.parametrize(("src_mode", "dst_mode"), MODES,
                         ids=[f"{a}-to-{b}" for a, b in MODES])
def test_a_clone_in_the_same_namespace_copies_every_byte(clones: Clones, src_mode: str,
                                                         dst_mode: str) -> None:
    ns = clones.ns.new()
    user, as_user = tenant(clones, ns)
    # No extra permission for a same-namespace clone: not even datavolumes/source.
    assert not allowed(clones.api, user, ns, "datavolumes", sub="source")
    assert not allowed(clones.api, user, ns, "pods", group="")
    src = make_source(clones.cluster, ns, "golden", mode=src_mode, size=SIZE, data_len=DATA)
    name = new_name()
    made = create_dv_as(as_user, ns, clone_dv(name, pvc_source(src), size=SIZE,
                                              mode=dst_mode))
    assert clone.TOKEN_ANNOTATION in made["metadata"].get("annotations", {}), (
        "admission should record its approval as a clone token")
    dv = assert_succeeded(clones, ns, name, ns)
    assert dv["status"].get("progress") == "100.0%"
    assert_holds(clones.cluster, ns, name, src)
    reasons = {r for r, _ in clones.reasons(ns, name)}
    assert {"CloneScheduled", "CloneSucceeded"} <= reasons, reasons
    pvc = clones.pvc(ns, name) or {}
    anns = pvc["metadata"].get("annotations", {})
    assert anns.get(clone.CLONE_TYPE_ANNOTATION) == clone.Strategy.COPY
    assert pvc["spec"].get("volumeMode", "Filesystem") == dst_mode
    # The clone's pods, Services and Secrets are gone once it is over.
    wait_for("clone objects cleaned up", lambda: not clones.clone_objects(ns), timeout=60)
    # The source is untouched.
    assert_holds(clones.cluster, ns, "golden", src)


def test_a_clone_goes_through_cdis_phases_with_progress(clones: Clones) -> None:
    ns = clones.ns.new()
    src = make_source(clones.cluster, ns, "src", size="160Mi", data_len=128 * MiB,
                      seed=19)
    name = new_name()
    seen: list[tuple[str, str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            st = (clones.dv(ns, name) or {}).get("status", {})
            now = (st.get("phase", ""), st.get("progress", ""))
            if now[0] and (not seen or seen[-1] != now):
                seen.append(now)
            stop.wait(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        clones.cdi.create_dv(ns, clone_dv(name, pvc_source(src), size="160Mi"))
        assert_succeeded(clones, ns, name, ns)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(5)
    phases = [p for i, (p, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != p]
    order = ["Pending", "PVCBound", "CloneScheduled", "CloneInProgress", "Succeeded"]
    assert all(p in order for p in phases), seen
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases), seen
    assert "CloneInProgress" in phases and phases[-1] == "Succeeded", seen
    percents = [float(pr.rstrip("%")) for _, pr in seen if pr.endswith("%")]
    assert percents == sorted(percents) and percents[-1] == 100.0, seen
    print(f"phases and progress seen: {seen}")
    assert_holds(clones.cluster, ns, name, src)


# -- across namespaces: authorization -------------------------------------------------------

def test_a_user_with_the_rolebinding_clones_across_namespaces(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=DATA, seed=2)
    kind, role = grant_clone_from(clones.api, golden, user=user)
    wait_allowed(clones.api, user, golden, "datavolumes", sub="source")
    name = new_name()
    create_dv_as(as_user, ns, clone_dv(name, pvc_source(src), size=SIZE))
    assert_succeeded(clones, ns, name, golden)
    assert_holds(clones.cluster, ns, name, src)
    wait_for("source-namespace objects cleaned up",
             lambda: not clones.clone_objects(golden), timeout=60)
    print(f"granted by {kind} {role}")


def test_a_group_member_is_authorised_through_the_group(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    group = f"team-{uuid.uuid4().hex[:6]}"
    user = f"member-{uuid.uuid4().hex[:6]}"
    let_create_dvs(clones.api, ns, group=group)  # its own namespace, through the group too
    grant_clone_from(clones.api, golden, group=group)
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=8 * MiB, seed=3)
    as_member = ImpersonatingApi(clones.api, user, group)
    name = new_name()
    wait_for("the group's bindings in effect", lambda: _try_create(as_member, ns, clone_dv(
        name, pvc_source(src), size=SIZE)), timeout=30)
    assert_succeeded(clones, ns, name, golden)
    assert_holds(clones.cluster, ns, name, src)


def _try_create(api: Any, ns: str, dv: dict[str, Any]) -> bool:
    try:
        create_dv_as(api, ns, dv)
    except ApiError as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_a_user_without_the_rolebinding_is_refused_at_admission(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=4 * MiB, seed=4)
    name = new_name()
    with pytest.raises(ApiError) as refused:
        create_dv_as(as_user, ns, clone_dv(name, pvc_source(src), size=SIZE))
    body = refused.value.body
    assert 400 <= refused.value.status < 500, body
    # CDI's words: "User <u> has insufficient permissions in clone source namespace <ns>"
    assert "insufficient permissions" in body and golden in body and user in body, body
    assert clones.dv(ns, name) is None
    assert clones.pvc(ns, name) is None
    assert not clones.clone_objects(golden)


def test_a_user_who_may_create_pods_in_the_source_namespace_may_clone(clones: Clones) -> None:
    """CDI's other way in for a PVC source: whoever may run pods there can read it."""
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    clones.api.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{golden}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-creator"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]})
    bind(clones.api, golden, "Role", "pod-creator", user=user)
    wait_allowed(clones.api, user, golden, "pods", group="")
    assert not allowed(clones.api, user, golden, "datavolumes", sub="source")
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=4 * MiB, seed=18)
    name = new_name()
    create_dv_as(as_user, ns, clone_dv(name, pvc_source(src), size=SIZE))
    assert_succeeded(clones, ns, name, golden)
    assert_holds(clones.cluster, ns, name, src)


def test_a_serviceaccount_is_authorised_by_its_own_name(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    sa = f"system:serviceaccount:{ns}:default"
    let_create_dvs(clones.api, ns, sa=(ns, "default"))
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=4 * MiB, seed=5)
    as_sa = ImpersonatingApi(clones.api, sa, "system:serviceaccounts")
    wait_allowed(clones.api, sa, ns, "datavolumes")
    name = new_name()
    with pytest.raises(ApiError) as refused:
        create_dv_as(as_sa, ns, clone_dv(name, pvc_source(src), size=SIZE))
    assert "insufficient permissions" in refused.value.body, refused.value.body
    grant_clone_from(clones.api, golden, sa=(ns, "default"))
    wait_allowed(clones.api, sa, golden, "datavolumes", sub="source")
    create_dv_as(as_sa, ns, clone_dv(name, pvc_source(src), size=SIZE))
    assert_succeeded(clones, ns, name, golden)
    assert_holds(clones.cluster, ns, name, src)


def test_the_deploy_tree_ships_a_clusterrole_for_datavolumes_source(clones: Clones) -> None:
    assert shipped_source_role(clones.api) is not None, (
        "deploy/ should ship a ClusterRole granting create on datavolumes/source, so one "
        "RoleBinding gives a team clone access to a golden-image namespace")


def _tampered(token: str, **claims: Any) -> str:
    """The token with its claims changed and its signature kept (an edit after admission)."""
    head, payload, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(claims)
    raw = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{sig}"


def test_clone_tokens_changed_after_admission_start_nothing(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    grant_clone_from(clones.api, golden, user=user)
    wait_allowed(clones.api, user, golden, "datavolumes", sub="source")
    src = make_source(clones.cluster, golden, "disk", size=SIZE, data_len=4 * MiB, seed=6)
    other = make_source(clones.cluster, golden, "secret-disk", size=SIZE,
                        data_len=4 * MiB, seed=7)
    forged, swapped_a, swapped_b, missing = (new_name(p) for p in ("forged", "sa", "sb", "none"))
    key = clone.TOKEN_ANNOTATION
    with controller_paused(clones.api):
        made = {n: create_dv_as(as_user, ns, clone_dv(n, pvc_source(src), size=SIZE))
                for n in (forged, swapped_a, swapped_b, missing)}
        tokens = {n: d["metadata"]["annotations"][key] for n, d in made.items()}
        path = f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"
        edits = {
            # payload rewritten to name another source, the signature kept: forged
            forged: _tampered(tokens[forged], name=other.name),
            # genuine tokens, each for the other DataVolume: another target
            swapped_a: tokens[swapped_b],
            swapped_b: tokens[swapped_a],
            missing: None,
        }
        for n, value in edits.items():
            clones.api.merge_patch(f"{path}/{n}", {"metadata": {"annotations": {key: value}}})
    for n in edits:
        msg = clones.wait_reason(ns, n, "CloneValidationFailed", timeout=120)
        assert msg
    time.sleep(5)  # let a wrong controller act, if it would
    for n in edits:
        dv = clones.dv(ns, n) or {}
        assert dv.get("status", {}).get("phase") != "Succeeded", n
    assert not clones.clone_objects(golden), "nothing may be created in the source namespace"
    assert not clones.clone_objects(ns)
    pods = clones.api.get(f"/api/v1/namespaces/{golden}/pods")["items"]
    assert pods == [], [p["metadata"]["name"] for p in pods]


# -- sizes ----------------------------------------------------------------------------------

def test_a_target_smaller_than_its_source_is_refused(clones: Clones) -> None:
    ns = clones.ns.new()
    src = make_source(clones.cluster, ns, "big", size="96Mi", data_len=4 * MiB, seed=8)
    name = new_name()
    clones.cdi.create_dv(ns, clone_dv(name, pvc_source(src), size="32Mi", storage=False))
    msg = clones.wait_reason(ns, name, "ErrIncompatiblePVC", timeout=90)
    assert "smaller" in msg, msg
    dv = clones.dv(ns, name) or {}
    assert dv.get("status", {}).get("phase") != "Succeeded"
    assert not clones.clone_objects(ns)


def test_an_empty_target_size_takes_the_sources(clones: Clones) -> None:
    ns = clones.ns.new()
    src = make_source(clones.cluster, ns, "src", size="80Mi", data_len=16 * MiB, seed=9)
    name = new_name()
    clones.cdi.create_dv(ns, clone_dv(name, pvc_source(src), size=None))
    assert_succeeded(clones, ns, name, ns)
    pvc = clones.pvc(ns, name) or {}
    requested = pvc["spec"]["resources"]["requests"]["storage"]
    assert _bytes(requested) >= 80 * MiB, requested
    assert_holds(clones.cluster, ns, name, src)


def _bytes(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1000, "M": 10**6, "G": 10**9}
    for u, m in units.items():
        if q.endswith(u):
            return int(float(q[: -len(u)]) * m)
    return int(q)


# -- sources that come and go ---------------------------------------------------------------

def test_a_clone_waits_for_a_source_that_does_not_exist_yet(clones: Clones) -> None:
    ns = clones.ns.new()
    name = new_name()
    clones.cdi.create_dv(ns, clone_dv(name, {"pvc": {"namespace": ns, "name": "later"}},
                                      size=SIZE))
    msg = clones.wait_reason(ns, name, "CloneWithoutSource", timeout=60)
    assert "later" in msg, msg
    dv = clones.dv(ns, name) or {}
    assert dv.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    src = make_source(clones.cluster, ns, "later", size=SIZE, data_len=DATA, seed=10)
    assert_succeeded(clones, ns, name, ns)
    assert_holds(clones.cluster, ns, name, src)


def test_a_source_deleted_mid_clone_never_gives_a_wrong_success(clones: Clones) -> None:
    ns = clones.ns.new()
    src = make_source(clones.cluster, ns, "doomed", size="160Mi", data_len=128 * MiB,
                      seed=11)
    name = new_name()
    clones.cdi.create_dv(ns, clone_dv(name, pvc_source(src), size="160Mi"))
    when = clones.wait_phase(ns, name, "CloneInProgress", "Succeeded", "Failed",
                             timeout=180)["status"]["phase"]
    clones.api.delete(f"{PVC_PATH.format(ns=ns)}/doomed")
    dv = clones.wait_phase(ns, name, "Succeeded", "Failed", timeout=240)
    print(f"source deleted while the DataVolume was {when}; it ended {dv['status']['phase']}")
    if dv["status"]["phase"] == "Succeeded":
        assert_holds(clones.cluster, ns, name, src)
    else:
        msgs = " ".join(m for _, m in clones.reasons(ns, name))
        print(f"why: {clones.reasons(ns, name)}")
        assert "doomed" in msgs or "source" in msgs.lower(), msgs
    wait_for("the source PVC gone", lambda: clones.pvc(ns, "doomed") is None, timeout=120)
    wait_for("clone objects cleaned up", lambda: not clones.clone_objects(ns), timeout=60)


# -- nodes ----------------------------------------------------------------------------------

def test_a_cross_node_cross_namespace_clone_moves_the_bytes_between_nodes(
        clones: Clones) -> None:
    nodes = clones.node_names()
    if len(nodes) < 2:
        pytest.skip("needs a two-node cluster (hack/cluster up --nodes 2)")
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    grant_clone_from(clones.api, golden, user=user)
    wait_allowed(clones.api, user, golden, "datavolumes", sub="source")
    src = make_source(clones.cluster, golden, "disk", mode="Block", size=SIZE,
                      data_len=DATA, sc=f"local-{nodes[0]}", seed=12)
    name = new_name()
    with PodNodes(clones.api, [golden, ns]) as seen:
        create_dv_as(as_user, ns, clone_dv(name, pvc_source(src), size=SIZE,
                                           sc=f"local-{nodes[1]}"))
        assert_succeeded(clones, ns, name, golden)
    assert_holds(clones.cluster, ns, name, src)
    src_pods = {p: n for p, n in seen.seen.items() if p.startswith(f"{golden}/")}
    dst_pods = {p: n for p, n in seen.seen.items() if p.startswith(f"{ns}/")}
    assert src_pods and set(src_pods.values()) == {nodes[0]}, seen.seen
    assert dst_pods and set(dst_pods.values()) == {nodes[1]}, seen.seen
    pv = clones.api.get(f"/api/v1/persistentvolumes/{clones.pvc(ns, name)['spec']['volumeName']}")
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert nodes[1] in json.dumps(terms)


# -- golden images through DataSources ------------------------------------------------------

def _datasource(name: str, src_ns: str, pvc: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": name},
            "spec": {"source": {"pvc": {"namespace": src_ns, "name": pvc}}}}


def _ready(clones: Clones, ns: str, name: str) -> str | None:
    ds = clones.api.get_or_none(f"{DS_PATH.format(ns=ns)}/{name}") or {}
    cond = next((c for c in ds.get("status", {}).get("conditions", [])
                 if c.get("type") == "Ready"), None)
    return cond.get("status") if cond else None


def test_a_vm_style_datavolume_clones_a_golden_image_through_a_datasource(
        clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    grant_clone_from(clones.api, golden, user=user)
    wait_allowed(clones.api, user, golden, "datavolumes", sub="source")
    clones.api.create(DS_PATH.format(ns=golden), _datasource("fedora", golden, "fedora-img"))
    # Not ready while its PVC does not exist, and a DataVolume on it waits and says why.
    wait_for("DataSource Ready=False", lambda: _ready(clones, golden, "fedora") == "False",
             timeout=60)
    ref = {"sourceRef": {"kind": "DataSource", "namespace": golden, "name": "fedora"}}
    waiting = new_name("vm-rootdisk")
    create_dv_as(as_user, ns, clone_dv(waiting, ref, size=None))
    wait_for(f"{waiting} says why it waits", lambda: any(
        r in ("CloneWithoutSource", "DataSourceNotReady") or "fedora" in m
        for r, m in clones.reasons(ns, waiting)), timeout=60)
    assert (clones.dv(ns, waiting) or {}).get("status", {}).get("phase") != "Succeeded"
    src = make_source(clones.cluster, golden, "fedora-img", size=SIZE, data_len=DATA,
                      seed=13)
    wait_for("DataSource Ready=True", lambda: _ready(clones, golden, "fedora") == "True",
             timeout=60)
    # As KubeVirt's dataVolumeTemplates make them: spec.storage with a size, or without.
    sized = new_name("vm-rootdisk")
    create_dv_as(as_user, ns, clone_dv(sized, ref, size=SIZE))
    for n in (waiting, sized):
        assert_succeeded(clones, ns, n, golden)
        assert_holds(clones.cluster, ns, n, src)


def test_a_sourceref_is_refused_for_a_user_without_access_to_its_source(
        clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    _user, as_user = tenant(clones, ns)
    make_source(clones.cluster, golden, "img", size=SIZE, data_len=MiB, seed=14)
    clones.api.create(DS_PATH.format(ns=golden), _datasource("img", golden, "img"))
    ref = {"sourceRef": {"kind": "DataSource", "namespace": golden, "name": "img"}}
    with pytest.raises(ApiError) as refused:
        create_dv_as(as_user, ns, clone_dv(new_name(), ref, size=SIZE))
    assert "insufficient permissions" in refused.value.body, refused.value.body


def test_ten_clones_of_one_golden_image_at_once_all_succeed(clones: Clones) -> None:
    golden, ns = clones.ns.new("golden"), clones.ns.new()
    user, as_user = tenant(clones, ns)
    grant_clone_from(clones.api, golden, user=user)
    wait_allowed(clones.api, user, golden, "datavolumes", sub="source")
    src = make_source(clones.cluster, golden, "base", size=SIZE, data_len=DATA, seed=15)
    clones.api.create(DS_PATH.format(ns=golden), _datasource("base", golden, "base"))
    wait_for("DataSource Ready", lambda: _ready(clones, golden, "base") == "True", timeout=60)
    names = [f"vm-{i}" for i in range(10)]
    ref = {"sourceRef": {"kind": "DataSource", "namespace": golden, "name": "base"}}
    made = run_parallel([lambda n=n: create_dv_as(as_user, ns, clone_dv(n, ref, size=SIZE))
                         for n in names], timeout=120)
    errors = [m for m in made if isinstance(m, BaseException)]
    assert not errors, errors
    for n in names:
        assert_succeeded(clones, ns, n, golden, timeout=900)
    for n in names:
        assert_holds(clones.cluster, ns, n, src)
    wait_for("all clone objects cleaned up", lambda: not clones.clone_objects(golden)
             and not clones.clone_objects(ns), timeout=120)


# -- legacy -------------------------------------------------------------------------------

def test_a_legacy_clonerequest_pvc_clones(clones: Clones) -> None:
    ns = clones.ns.new()
    src = make_source(clones.cluster, ns, "old", size=SIZE, data_len=8 * MiB, seed=16)
    clones.api.create(PVC_PATH.format(ns=ns), pvc_manifest(
        "legacy", SIZE, annotations={clone.CLONE_REQUEST_ANNOTATION: f"{ns}/old"}))

    def done() -> dict[str, str] | None:
        a = (clones.pvc(ns, "legacy") or {}).get("metadata", {}).get("annotations", {})
        phase = a.get("cdi.kubevirt.io/storage.pod.phase")
        return a if phase in ("Succeeded", "Failed") else None

    try:
        a = wait_for("legacy clone", done, timeout=180)
    except AssertionError:
        raise AssertionError(clones.diagnose(ns, "legacy", "not done")) from None
    assert a["cdi.kubevirt.io/storage.pod.phase"] == "Succeeded", a
    # The controller marks the target once it has read the server's success (next pass).
    wait_for("the target marked cloneOf", lambda: (clones.pvc(ns, "legacy") or {})
             .get("metadata", {}).get("annotations", {})
             .get(clone.CLONE_OF_ANNOTATION) == "true", timeout=30)
    assert_holds(clones.cluster, ns, "legacy", src)


# -- strategy fallback ----------------------------------------------------------------------

def test_a_csi_clone_profile_falls_back_to_copy_and_says_why(clones: Clones) -> None:
    profile = "/apis/cdi.kubevirt.io/v1beta1/storageprofiles/local"
    before = (clones.api.get(profile).get("spec") or {}).get("cloneStrategy")
    clones.api.merge_patch(profile, {"spec": {"cloneStrategy": "csi-clone"}})
    try:
        wait_for("profile status says csi-clone", lambda: clones.api.get(profile)
                 .get("status", {}).get("cloneStrategy") == "csi-clone", timeout=30)
        ns = clones.ns.new()
        src = make_source(clones.cluster, ns, "src", size=SIZE, data_len=4 * MiB, seed=17)
        name = new_name()
        clones.cdi.create_dv(ns, clone_dv(name, pvc_source(src), size=SIZE))
        assert_succeeded(clones, ns, name, ns)
        anns = (clones.pvc(ns, name) or {})["metadata"].get("annotations", {})
        assert anns.get(clone.CLONE_TYPE_ANNOTATION) == clone.Strategy.COPY, anns
        assert anns.get(clone.FALLBACK_REASON_ANNOTATION), anns
        assert_holds(clones.cluster, ns, name, src)
    finally:
        clones.api.merge_patch(profile, {"spec": {"cloneStrategy": before}})

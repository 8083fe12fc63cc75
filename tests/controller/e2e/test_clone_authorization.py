"""Who may clone what, decided at admission by the real API server's RBAC.

The product is installed as users install it; DataVolumes and legacy CloneRequest PVCs
are created AS other users (kubectl impersonation with their groups) and as a
ServiceAccount with its own bound token, so each SubjectAccessReview is answered by the
real authorizer for the real requester. The outcome is the object in the API: admitted
with a clone token that verifies, with the controller's public key, for exactly that
source and target, or refused with CDI's message and absent. The sources need not exist.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from cdicontract import clone, clonetoken
from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import DV_PATH, Cdi, dv_manifest

pytestmark = pytest.mark.cluster

DS_PATH = "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datasources"
PVC_PATH = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
RB_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
ROLE_PATH = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
GROUP = "team-a"  # every user below is in it; the target namespace's edit right is theirs


@dataclass(frozen=True)
class World:
    cdi: Cdi
    golden: str  # the golden-image namespace: clone sources live here
    team: str  # where the team creates its DataVolumes
    catalog: str  # DataSources pointing into `golden`
    public_key: Any

    def as_user(self, user: str, obj: dict[str, Any], ns: str) -> Any:
        """Create `obj` in `ns` as `user` (member of GROUP); the CompletedProcess."""
        return self.cdi.kubectl("--as", user, "--as-group", GROUP, "-n", ns, "create",
                                "-o", "json", "-f", "-", input=json.dumps(obj), check=False)

    def token_of(self, obj: dict[str, Any]) -> str:
        return str(obj["metadata"].get("annotations", {})[clone.TOKEN_ANNOTATION])

    def verifies(self, token: str, ref: clonetoken.CloneRef) -> bool:
        try:
            clonetoken.verify(token, self.public_key, ref)
        except clonetoken.TokenError:
            return False
        return True


def _namespace(api: Any, prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    return ns


def _bind(api: Any, ns: str, name: str, role_kind: str, role: str,
          subjects: list[dict[str, str]]) -> None:
    api.create(RB_PATH.format(ns=ns), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects})


def _user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


@pytest.fixture(scope="module")
def world(cdi: Cdi) -> Iterator[World]:
    api = cdi.api
    wait_for("clone webhook caBundle", lambda: api.get(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
        "cdi-api-datavolume-mutate")["webhooks"][0]["clientConfig"].get("caBundle"),
        timeout=30)
    golden, team, catalog = (_namespace(api, p) for p in ("golden", "team", "catalog"))
    # The team may create DataVolumes and PVCs in its own namespace (built-in edit, into
    # which CDI's edit rights are aggregated).
    _bind(api, team, "team-edit", "ClusterRole", "edit",
          [{"kind": "Group", "name": GROUP, "apiGroup": "rbac.authorization.k8s.io"}])
    # alice: the one RoleBinding the README documents, in the golden namespace.
    _bind(api, golden, "alice-cdi-cloner", "ClusterRole", "cdi-cloner", [_user("alice")])
    # carol: may create pods in the golden namespace (CDI's second way).
    api.create(ROLE_PATH.format(ns=golden), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-creator", "namespace": golden},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]})
    _bind(api, golden, "carol-pods", "Role", "pod-creator", [_user("carol")])
    # dave: may clone from the catalog namespace only, not from golden.
    _bind(api, catalog, "dave-cdi-cloner", "ClusterRole", "cdi-cloner", [_user("dave")])
    # bob: nothing outside his team's namespace.
    secret = api.get("/api/v1/namespaces/cdi/secrets/cdi-clone-token-key")
    private = serialization.load_pem_private_key(
        base64.b64decode(secret["data"]["id_rsa"]), password=None)
    # The RBAC caches of the authorizer catch up with new bindings within moments.
    wait_for("edit aggregated with DataVolumes", lambda: any(
        "datavolumes" in r.get("resources", []) for r in
        api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/edit")["rules"]), timeout=30)
    yield World(cdi, golden, team, catalog, private.public_key())  # type: ignore[union-attr]
    for ns in (golden, team, catalog):
        api.delete(f"/api/v1/namespaces/{ns}")


def _dv(name: str, source_ns: str, source_name: str = "disk") -> dict[str, Any]:
    dv = dv_manifest(name, {"pvc": {"namespace": source_ns, "name": source_name}})
    dv["metadata"].pop("annotations")
    return dv


def _created(result: Any) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_user_with_the_cdi_cloner_rolebinding_gets_a_token_for_exactly_this_clone(
        world: World) -> None:
    dv = _created(world.as_user("alice", _dv("from-golden", world.golden), world.team))
    token = world.token_of(dv)
    ref = clonetoken.CloneRef(world.golden, "disk", world.team, "from-golden")
    assert world.verifies(token, ref)
    for other in (clonetoken.CloneRef(world.golden, "other", world.team, "from-golden"),
                  clonetoken.CloneRef(world.golden, "disk", world.team, "elsewhere"),
                  clonetoken.CloneRef(world.team, "disk", world.team, "from-golden"),
                  clonetoken.CloneRef(world.golden, "disk", world.team, "from-golden",
                                      clonetoken.KIND_SNAPSHOT)):
        assert not world.verifies(token, other), other


def test_a_user_without_it_is_refused_at_admission_and_no_datavolume_exists(
        world: World) -> None:
    result = world.as_user("bob", _dv("bob-from-golden", world.golden), world.team)
    assert result.returncode != 0
    assert (f"User bob has insufficient permissions in clone source namespace {world.golden}"
            in result.stderr), result.stderr
    assert world.cdi.dv(world.team, "bob-from-golden") is None


def test_a_user_who_may_create_pods_in_the_source_namespace_is_admitted(world: World) -> None:
    dv = _created(world.as_user("carol", _dv("carol-from-golden", world.golden), world.team))
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.golden, "disk", world.team, "carol-from-golden"))


def test_a_same_namespace_clone_needs_no_rolebinding(world: World) -> None:
    dv = _created(world.as_user("bob", _dv("bob-local", world.team), world.team))
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.team, "disk", world.team, "bob-local"))


def test_a_token_the_creator_supplied_is_replaced(world: World) -> None:
    forged = clonetoken.sign(_attacker_key(), clonetoken.CloneRef(
        world.golden, "disk", world.team, "alice-forged"))
    manifest = _dv("alice-forged", world.golden)
    manifest["metadata"]["annotations"] = {clone.TOKEN_ANNOTATION: forged, "keep": "me"}
    dv = _created(world.as_user("alice", manifest, world.team))
    token = world.token_of(dv)
    assert token != forged
    assert dv["metadata"]["annotations"]["keep"] == "me"
    assert world.verifies(token, clonetoken.CloneRef(
        world.golden, "disk", world.team, "alice-forged"))
    # And a forged token given by a user who may not clone is no way around the refusal.
    manifest["metadata"]["name"] = "bob-forged"
    result = world.as_user("bob", manifest, world.team)
    assert "insufficient permissions" in result.stderr
    assert world.cdi.dv(world.team, "bob-forged") is None


def _attacker_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_non_clone_datavolume_is_left_alone(world: World) -> None:
    manifest = dv_manifest("blank-one", {"blank": {}})
    manifest["metadata"]["annotations"] = {clone.TOKEN_ANNOTATION: "whatever"}
    dv = _created(world.as_user("bob", manifest, world.team))
    assert dv["metadata"]["annotations"] == {clone.TOKEN_ANNOTATION: "whatever"}


def _snapshot_dv(name: str, source_ns: str) -> dict[str, Any]:
    dv = _dv(name, source_ns)
    dv["spec"]["source"] = {"snapshot": {"namespace": source_ns, "name": "snap-1"}}
    return dv


def test_a_snapshot_needs_datavolumes_source_or_both_pods_and_pvcs(world: World) -> None:
    dv = _created(world.as_user("alice", _snapshot_dv("alice-snap", world.golden), world.team))
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.golden, "snap-1", world.team, "alice-snap", clonetoken.KIND_SNAPSHOT))
    # carol may create pods in golden, but not PVCs: not enough for a snapshot.
    result = world.as_user("carol", _snapshot_dv("carol-snap", world.golden), world.team)
    assert "User carol has insufficient permissions" in result.stderr, result.stderr
    api = world.cdi.api
    api.create(ROLE_PATH.format(ns=world.golden), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-and-pvc-creator", "namespace": world.golden},
        "rules": [{"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims"],
                   "verbs": ["create"]}]})
    _bind(api, world.golden, "erin-pods-pvcs", "Role", "pod-and-pvc-creator", [_user("erin")])
    dv = wait_for("erin's snapshot clone admitted", lambda: (
        json.loads(r.stdout) if (r := world.as_user(
            "erin", _snapshot_dv("erin-snap", world.golden), world.team)).returncode == 0
        else None), timeout=15)
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.golden, "snap-1", world.team, "erin-snap", clonetoken.KIND_SNAPSHOT))


def test_a_source_namespace_that_does_not_exist_is_refused_as_cdi_does(world: World) -> None:
    result = world.as_user("alice", _dv("from-nowhere", "no-such-namespace"), world.team)
    assert 'namespaces "no-such-namespace" not found' in result.stderr, result.stderr
    assert world.cdi.dv(world.team, "from-nowhere") is None


def test_a_pre_populated_datavolume_the_user_may_not_clone_goes_without_a_token(
        world: World) -> None:
    manifest = _dv("bob-prepopulated", world.golden)
    manifest["metadata"]["annotations"] = {"cdi.kubevirt.io/storage.prePopulated": "x"}
    dv = _created(world.as_user("bob", manifest, world.team))
    assert clone.TOKEN_ANNOTATION not in dv["metadata"]["annotations"]


def _datasource(world: World, name: str, source: dict[str, Any]) -> None:
    world.cdi.api.create(DS_PATH.format(ns=world.catalog), {
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": name, "namespace": world.catalog},
        "spec": {"source": source}})


def _ref_dv(name: str, ds_ns: str, ds_name: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name},
            "spec": {"sourceRef": {"kind": "DataSource", "namespace": ds_ns, "name": ds_name},
                     "storage": {"resources": {"requests": {"storage": "64Mi"}}}}}


def test_a_datasource_source_is_authorised_against_the_namespace_it_points_into(
        world: World) -> None:
    _datasource(world, "fedora", {"pvc": {"namespace": world.golden, "name": "fedora-42"}})
    # alice may clone from golden (not from catalog): admitted, the token names golden's PVC.
    dv = _created(world.as_user("alice", _ref_dv("vm-root", world.catalog, "fedora"),
                                world.team))
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.golden, "fedora-42", world.team, "vm-root"))
    # dave may clone from catalog, where the DataSource is, but not from golden: refused.
    result = world.as_user("dave", _ref_dv("dave-root", world.catalog, "fedora"), world.team)
    assert (f"User dave has insufficient permissions in clone source namespace {world.golden}"
            in result.stderr), result.stderr
    assert world.cdi.dv(world.team, "dave-root") is None


def test_a_snapshot_datasource_gets_a_snapshot_token(world: World) -> None:
    _datasource(world, "snap", {"snapshot": {"namespace": world.golden, "name": "snap-1"}})
    dv = _created(world.as_user("alice", _ref_dv("from-snap", world.catalog, "snap"),
                                world.team))
    assert world.verifies(world.token_of(dv), clonetoken.CloneRef(
        world.golden, "snap-1", world.team, "from-snap", clonetoken.KIND_SNAPSHOT))


def test_a_missing_datasource_is_refused_as_cdi_does(world: World) -> None:
    result = world.as_user("alice", _ref_dv("no-ds", world.catalog, "absent"), world.team)
    assert result.returncode != 0
    assert 'datasources.cdi.kubevirt.io "absent" not found' in result.stderr, result.stderr
    assert world.cdi.dv(world.team, "no-ds") is None


def _claim(name: str, request: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": {clone.CLONE_REQUEST_ANNOTATION: request}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "64Mi"}}}}


def test_a_legacy_clone_request_pvc_gets_a_token_or_is_refused(world: World) -> None:
    pvc = _created(world.as_user("alice", _claim("legacy", f"{world.golden}/disk"),
                                 world.team))
    assert world.verifies(world.token_of(pvc), clonetoken.CloneRef(
        world.golden, "disk", world.team, "legacy"))
    result = world.as_user("bob", _claim("bob-legacy", f"{world.golden}/disk"), world.team)
    assert (f"User bob has insufficient permissions in clone source namespace {world.golden}"
            in result.stderr), result.stderr
    assert world.cdi.api.get_or_none(
        f"{PVC_PATH.format(ns=world.team)}/bob-legacy") is None
    # A DataVolume's own PVC is authorised through its DataVolume: never sent, untouched
    # (the controller takes such a PVC's source from its DataVolume, not from the PVC).
    owned = _claim("owned", f"{world.golden}/disk")
    owned["metadata"]["ownerReferences"] = [{
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "owner",
        "uid": str(uuid.uuid4())}]
    created = _created(world.as_user("bob", owned, world.team))
    assert clone.TOKEN_ANNOTATION not in created["metadata"]["annotations"]
    # A PVC without the annotation never reaches the webhook.
    plain = _claim("plain", "x/y")
    plain["metadata"]["annotations"] = {"other": "value"}
    assert _created(world.as_user("bob", plain, world.team))["metadata"]["annotations"] == {
        "other": "value"}


def test_a_serviceaccount_with_the_rolebinding_is_admitted_with_its_own_credentials(
        world: World) -> None:
    api = world.cdi.api
    api.create(f"/api/v1/namespaces/{world.team}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    _bind(api, world.team, "robot-edit", "ClusterRole", "edit",
          [{"kind": "ServiceAccount", "name": "robot", "namespace": world.team}])
    issued = api.create(f"/api/v1/namespaces/{world.team}/serviceaccounts/robot/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600}})
    bearer = issued["status"]["token"]

    def create(name: str) -> requests.Response:
        return requests.post(
            api.creds.server + DV_PATH.format(ns=world.team), json=_dv(name, world.golden),
            headers={"Authorization": f"Bearer {bearer}"}, verify=str(api.creds.ca),
            timeout=30)

    refused = create("robot-early")
    assert refused.status_code == 422, refused.text
    assert (f"User system:serviceaccount:{world.team}:robot has insufficient permissions "
            f"in clone source namespace {world.golden}") in refused.json()["message"]
    _bind(api, world.golden, "robot-cdi-cloner", "ClusterRole", "cdi-cloner",
          [{"kind": "ServiceAccount", "name": "robot", "namespace": world.team}])
    admitted = wait_for("robot's clone admitted", lambda: (
        r if (r := create("robot-clone")).status_code == 201 else None), timeout=15)
    assert world.verifies(world.token_of(admitted.json()), clonetoken.CloneRef(
        world.golden, "disk", world.team, "robot-clone"))


@pytest.mark.parametrize(("account", "expected"), [
    ("cdi-sa", "yes"), ("cdi-apiserver", "no"), ("cdi-uploadproxy", "no"),
    ("default", "no")])
def test_only_the_controller_may_read_the_clone_token_key(world: World, account: str,
                                                          expected: str) -> None:
    result = world.cdi.kubectl("auth", "can-i", "get", "secret/cdi-clone-token-key",
                               "-n", "cdi", "--as", f"system:serviceaccount:cdi:{account}",
                               check=False)
    assert result.stdout.strip() == expected, (account, result.stdout, result.stderr)

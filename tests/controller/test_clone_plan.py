"""The clone transfer's plan for one target PVC: every wait, refusal, step and cleanup."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import clone, clonetoken
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from controller import certs
from controller.cdiconfig import EffectiveConfig
from controller.runtime import kube
from controller.runtime.actions import Create, Delete, Patch
from controller.transfers.clone import objects
from controller.transfers.clone.transfer import CloneTransfer
from controller.transfers.protocol import ClaimView, CloneSeen, PvcEvent, Recheck
from controller.transfers.upload import objects as uploadobjects
from controller.transfers.upload.authority import Authority
from tests.controller import factories as f

P = "cdi.kubevirt.io/"
COND = P + "storage.condition.running"
REASON = COND + ".reason"
MESSAGE = COND + ".message"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def authority():
    return Authority(certs.new_ca("server-ca"), certs.new_ca("client-ca"))


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clones(authority, key):
    return CloneTransfer(uploadobjects.PodSettings("cdi-py/uploadserver:test"),
                         objects.SourcePodSettings("cdi-py/cloner:test"), authority, key)


def target(ns="ns", *, source="ns/src", annotations=None, finalizers=(), deleting=False,
           dv_owned=False, **kw):
    p = f.pvc("tgt", annotations={clone.CLONE_REQUEST_ANNOTATION: source,
                                  **(annotations or {})}, **kw)
    p["metadata"].update(namespace=ns, uid="tgt-uid", resourceVersion="7",
                         finalizers=list(finalizers))
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if dv_owned:
        p["metadata"]["ownerReferences"] = [{"kind": "DataVolume", "name": "tgt",
                                             "uid": "dv-uid", "controller": True}]
    return p


def source_pvc(ns="ns", name="src", *, deleting=False, annotations=None,
               deleted_at="2026-01-01T00:00:00Z", **kw):
    p = f.pvc(name, annotations=annotations, **kw)
    p["metadata"].update(namespace=ns, uid="src-uid")
    if deleting:
        p["metadata"]["deletionTimestamp"] = deleted_at
    return p


def pod(name, ns, *, ready=False, **kw):
    p = f.pod(conditions=[{"type": "Ready", "status": "True" if ready else "False"}], **kw)
    p["metadata"].update(name=name, namespace=ns)
    return p


def server(ready=True, **kw):
    return pod("cdi-upload-tgt", "ns", ready=ready, **kw)


def source_pod(ns="ns", **kw):
    return pod(clone.source_pod_name("tgt-uid"), ns, **kw)


def svc(pvc):
    body = uploadobjects.service(pvc, objects.KIND)
    body["metadata"]["uid"] = "svc-uid"
    return body


def seen(pvc, *, src=None, srcpod=None, writers=(), pod=None, services=None, users=(),
         now=NOW):
    """The view; the target's Service exists once its server pod does."""
    if services is None:
        services = [svc(pvc)] if pod is not None else []
    return ClaimView(pvc, pod, False, EffectiveConfig(), tuple(services), tuple(users),
                     CloneSeen(src, srcpod, tuple(writers), now))


def creates(steps):
    return [(s.resource.plural, s.namespace, s.name) for s in steps if isinstance(s, Create)]


def events(steps):
    return [(e.type, e.reason, e.message) for e in steps if isinstance(e, PvcEvent)]


def patched(steps):
    out: dict = {}
    for s in steps:
        if isinstance(s, Patch):
            out.update((s.patch.get("metadata") or {}).get("annotations") or {})
    return out


def token(key, *, src=("src-ns", "src"), dst=("ns", "tgt"), now=NOW, lifetime=None):
    ref = clonetoken.CloneRef(*src, *dst)
    return clonetoken.sign(key, ref, now=now, lifetime=lifetime or clonetoken.LIFETIME)


# ---- which PVCs --------------------------------------------------------------------


def test_targets_are_copy_or_untyped_clone_requests(clones):
    assert clones.targets(target())
    assert clones.targets(target(annotations={clone.CLONE_TYPE_ANNOTATION: "copy"}))
    assert not clones.targets(target(annotations={clone.CLONE_TYPE_ANNOTATION: "csi-clone"}))
    assert not clones.targets(target(annotations={clone.CLONE_TYPE_ANNOTATION: "snapshot"}))
    assert not clones.targets(f.pvc())
    assert clones.claim_annotations(f.dv(source={"pvc": {"namespace": "a", "name": "b"}})) \
        is None


def test_a_malformed_clone_request_is_refused(clones):
    steps = clones.plan(seen(target(source="just-a-name")))
    assert creates(steps) == []
    assert patched(steps)[REASON] == "CloneValidationFailed"
    assert patched(steps)[MESSAGE].startswith(
        "The clone doesn't meet the validation requirements: ")


# ---- authorization ----------------------------------------------------------------


def _refused(steps, why):
    assert creates(steps) == []
    assert patched(steps)[REASON] == "CloneValidationFailed"
    assert patched(steps)[MESSAGE] == f"The clone doesn't meet the validation requirements: {why}"
    assert events(steps) == [("Warning", "CloneValidationFailed", patched(steps)[MESSAGE])]


def test_cross_namespace_without_token_creates_nothing(clones):
    _refused(clones.plan(seen(target(source="src-ns/src"), src=source_pvc("src-ns"))),
             "no clone token")


def test_forged_token_is_refused(clones):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pvc = target(source="src-ns/src", annotations={clone.TOKEN_ANNOTATION: token(other)})
    _refused(clones.plan(seen(pvc, src=source_pvc("src-ns"))),
             "invalid clone token: InvalidSignatureError")


def test_tampered_token_is_refused(clones, key):
    good = token(key)
    head, body, sig = good.split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b"src", b"sr2")
    forged = ".".join([head, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), sig])
    pvc = target(source="src-ns/src", annotations={clone.TOKEN_ANNOTATION: forged})
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns")))
    assert creates(steps) == []
    assert patched(steps)[REASON] == "CloneValidationFailed"


def test_expired_token_is_refused(clones, key):
    pvc = target(source="src-ns/src", annotations={clone.TOKEN_ANNOTATION: token(key)})
    later = NOW + clonetoken.LIFETIME + timedelta(minutes=5)
    _refused(clones.plan(seen(pvc, src=source_pvc("src-ns"), now=later)),
             "clone token expired")


@pytest.mark.parametrize(("src", "dst", "why"), [
    (("src-ns", "other"), ("ns", "tgt"), "clone token is for another source"),
    (("src-ns", "src"), ("ns", "other"), "clone token is for another target"),
    (("src-ns", "src"), ("other-ns", "tgt"), "clone token is for another target"),
])
def test_token_for_another_source_or_target_is_refused(clones, key, src, dst, why):
    pvc = target(source="src-ns/src",
                 annotations={clone.TOKEN_ANNOTATION: token(key, src=src, dst=dst)})
    _refused(clones.plan(seen(pvc, src=source_pvc("src-ns"))), why)


def test_a_forged_extended_token_is_not_rescued_by_a_valid_short_one(clones, key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pvc = target(source="src-ns/src", annotations={
        clone.TOKEN_ANNOTATION: token(key),
        clone.EXTENDED_TOKEN_ANNOTATION: token(other, lifetime=clonetoken.EXTENDED_LIFETIME)})
    _refused(clones.plan(seen(pvc, src=source_pvc("src-ns"))),
             "invalid clone token: InvalidSignatureError")


def test_valid_short_token_is_resigned_long_lived_before_anything_else(clones, key):
    pvc = target(source="src-ns/src", annotations={clone.TOKEN_ANNOTATION: token(key)})
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns")))
    assert creates(steps) == []
    extended = patched(steps)[clone.EXTENDED_TOKEN_ANNOTATION]
    ref = clonetoken.CloneRef("src-ns", "src", "ns", "tgt")
    expires = clonetoken.verify(extended, key.public_key(), ref, now=NOW + timedelta(days=30))
    assert expires - NOW == clonetoken.EXTENDED_LIFETIME


def test_valid_extended_token_lets_the_clone_start(clones, key):
    pvc = target(source="src-ns/src", annotations={
        clone.EXTENDED_TOKEN_ANNOTATION: token(key, lifetime=clonetoken.EXTENDED_LIFETIME)})
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns"), now=NOW + timedelta(days=2)))
    assert creates(steps) == [("services", "ns", "cdi-upload-tgt"),
                              ("secrets", "ns", "cdi-upload-tgt"),
                              ("pods", "ns", "cdi-upload-tgt")]


def test_same_namespace_needs_no_token(clones):
    steps = clones.plan(seen(target(), src=source_pvc()))
    assert ("pods", "ns", "cdi-upload-tgt") in creates(steps)


# ---- waiting for the source ---------------------------------------------------------


def test_absent_source_waits_with_cdis_reason_and_one_event(clones):
    steps = clones.plan(seen(target()))
    assert creates(steps) == []
    assert patched(steps) == {COND: "false", REASON: "CloneWithoutSource",
                              MESSAGE: "The source pvc src doesn't exist"}
    assert events(steps) == [("Warning", "CloneWithoutSource",
                              "The source pvc src doesn't exist")]
    again = target(annotations=patched(steps))
    assert clones.plan(seen(again)) == []


def test_a_source_being_deleted_gets_no_new_clone(clones):
    steps = clones.plan(seen(target(), src=source_pvc(deleting=True)))
    assert creates(steps) == []
    assert patched(steps)[REASON] == "CloneSourceDeleting"
    assert "ns/src is being deleted" in patched(steps)[MESSAGE]


def test_an_unbound_source_waits(clones):
    steps = clones.plan(seen(target(), src=source_pvc(phase="Pending")))
    assert creates(steps) == []
    assert patched(steps)[MESSAGE] == "Waiting for the source pvc ns/src to be bound"


def test_a_source_still_being_imported_waits(clones):
    importing = {P + "storage.import.endpoint": "http://x/y", P + "storage.pod.phase": "Running"}
    steps = clones.plan(seen(target(), src=source_pvc(annotations=importing)))
    assert creates(steps) == []
    assert patched(steps)[MESSAGE] == "Waiting for the source pvc ns/src to be populated"
    done = {**importing, P + "storage.pod.phase": "Succeeded"}
    assert creates(clones.plan(seen(target(), src=source_pvc(annotations=done))))
    smart = {clone.CLONE_REQUEST_ANNOTATION: "x/y", clone.CLONE_TYPE_ANNOTATION: "csi-clone"}
    assert not creates(clones.plan(seen(target(), src=source_pvc(annotations=smart))))
    smart_done = {**smart, clone.CLONE_OF_ANNOTATION: "true"}
    assert creates(clones.plan(seen(target(), src=source_pvc(annotations=smart_done))))


def test_a_source_in_use_by_a_writer_waits_and_looks_again(clones):
    steps = clones.plan(seen(target(), src=source_pvc(), writers=["vm-1", "vm-2"]))
    assert creates(steps) == []
    message = "pod ns/vm-1, ns/vm-2 using PersistentVolumeClaim src"
    assert patched(steps)[REASON] == "CloneSourceInUse"
    assert events(steps) == [("Warning", "CloneSourceInUse", message)]
    assert Recheck(5.0) in steps


def test_a_target_in_use_gets_no_server(clones):
    steps = clones.plan(seen(target(), src=source_pvc(), users=["app"]))
    assert creates(steps) == []
    assert patched(steps)[REASON] == "UploadTargetInUse"


# ---- sizes and kinds (legacy targets) -----------------------------------------------


@pytest.mark.parametrize(("src", "dst", "why"), [
    (dict(size="2Gi"), dict(size="1Gi"),
     "target resources requests storage size is smaller than the source"),
    (dict(mode="Block", size="1Gi"), dict(mode="Filesystem", size="1Gi"),
     "target resources requests storage size is smaller than the source"),
    (dict(annotations={P + "storage.contentType": "archive"}), dict(),
     "source contentType (archive) and target contentType (kubevirt) do not match"),
    (dict(mode="Block", annotations={P + "storage.contentType": "archive"}),
     dict(annotations={P + "storage.contentType": "archive"}),
     "source volumeMode (Block) and target volumeMode (Filesystem) do not match, "
     "contentType (archive)"),
])
def test_an_incompatible_legacy_target_is_refused(clones, src, dst, why):
    steps = clones.plan(seen(target(**dst), src=source_pvc(**src)))
    assert creates(steps) == []
    assert patched(steps)[REASON] == "ErrIncompatiblePVC"
    assert patched(steps)[MESSAGE] == why


@pytest.mark.parametrize(("src", "dst"), [
    (dict(size="1Gi"), dict(size="1Gi")),
    (dict(mode="Block", size="1Gi"), dict(mode="Filesystem", size="1100Mi")),
    (dict(mode="Filesystem", size="1Gi"), dict(mode="Block", size="1Gi")),
])
def test_a_fitting_legacy_target_goes_on(clones, src, dst):
    assert creates(clones.plan(seen(target(**dst), src=source_pvc(**src))))


def test_datavolume_targets_are_sized_by_the_datavolume_side(clones):
    pvc = target(dv_owned=True, size="1Gi")
    assert creates(clones.plan(seen(pvc, src=source_pvc(size="2Gi"))))


# ---- the target server, then the source -------------------------------------------


def test_the_server_is_an_upload_server_in_clone_mode(clones):
    steps = clones.plan(seen(target(), src=source_pvc()))
    body = next(s.body for s in steps if isinstance(s, Create) and s.resource == kube.PODS)
    env = {e["name"]: e["value"] for e in body["spec"]["containers"][0]["env"]}
    assert env["UPLOADSERVER_MODE"] == "clone"
    assert env["UPLOADSERVER_CLIENT_NAME"] == clone.client_name("tgt-uid")
    assert body["metadata"]["labels"][P + "transfer"] == "clone"
    assert body["metadata"]["labels"][P + "owner-uid"] == "tgt-uid"
    service = next(s.body for s in steps if isinstance(s, Create)
                   and s.resource == kube.SERVICES)
    assert service["spec"]["selector"] == {P + "owner-uid": "tgt-uid", P + "transfer": "clone"}


def test_nothing_in_the_source_namespace_until_the_server_is_ready(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(ready=False)))
    assert creates(steps) == []


def test_the_finalizer_goes_on_alone_before_the_source_pod(clones):
    pvc = target(finalizers=["kubernetes.io/pvc-protection"])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server()))
    assert steps == [Patch(kube.PVCS, "ns", "tgt", {"metadata": {
        "finalizers": ["kubernetes.io/pvc-protection", objects.FINALIZER],
        "resourceVersion": "7"}})]


def test_a_ready_server_gets_its_cloner_in_the_source_namespace(clones, authority, key):
    pvc = target(source="src-ns/src", finalizers=[objects.FINALIZER], annotations={
        clone.EXTENDED_TOKEN_ANNOTATION: token(key, lifetime=clonetoken.EXTENDED_LIFETIME)})
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns"), pod=server()))
    assert creates(steps) == [("secrets", "src-ns", clone.client_secret_name("tgt-uid")),
                              ("pods", "src-ns", clone.source_pod_name("tgt-uid"))]
    secret = next(s.body for s in steps if isinstance(s, Create)
                  and s.resource == kube.SECRETS)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.subject.rfc4514_string() == f"CN={clone.client_name('tgt-uid')}"
    assert cert.issuer == x509.load_pem_x509_certificate(authority.client_ca.cert_pem).subject
    assert base64.b64decode(secret["data"]["ca.crt"]) == authority.server_ca.cert_pem
    body = next(s.body for s in steps if isinstance(s, Create) and s.resource == kube.PODS)
    assert "ownerReferences" not in body["metadata"]
    assert body["metadata"]["labels"][P + "owner-uid"] == "tgt-uid"
    assert body["metadata"]["labels"][clone.SOURCE_PVC_LABEL] == "src"
    c = body["spec"]["containers"][0]
    assert c["image"] == "cdi-py/cloner:test"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env[clone.ENV_UPLOAD_URL] == "https://cdi-upload-tgt.ns.svc:443/v1beta1/clone"
    assert env[clone.ENV_VOLUME_MODE] == "Filesystem"
    assert env[clone.ENV_CONTENT_TYPE] == "kubevirt"
    assert env[clone.ENV_OWNER_UID] == "tgt-uid"
    assert {"name": objects.SOURCE_VOLUME, "mountPath": "/data", "readOnly": True} in \
        c["volumeMounts"]
    assert body["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "src",
                                                                   "readOnly": True}
    assert c["securityContext"]["runAsNonRoot"] is True
    assert body["spec"]["restartPolicy"] == "OnFailure"


def test_a_block_source_is_read_as_its_device(clones):
    pvc = target(finalizers=[objects.FINALIZER], mode="Block")
    steps = clones.plan(seen(pvc, src=source_pvc(mode="Block"), pod=server()))
    body = next(s.body for s in steps if isinstance(s, Create) and s.resource == kube.PODS
                and s.namespace == "ns" and s.name.endswith("source-pod"))
    c = body["spec"]["containers"][0]
    assert c["volumeDevices"] == [{"name": objects.SOURCE_VOLUME,
                                   "devicePath": "/dev/cdi-block-volume"}]
    assert {e["name"]: e["value"] for e in c["env"]}[clone.ENV_VOLUME_MODE] == "Block"


# ---- the source pod's fate ----------------------------------------------------------


def test_a_running_source_pod_is_left_alone(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=source_pod()))
    assert creates(steps) == []
    assert not [s for s in steps if isinstance(s, Delete)]


def test_a_running_clone_finishes_though_its_source_is_being_deleted(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(deleting=True), pod=server(),
                             srcpod=source_pod()))
    # It goes on as if nothing happened: still running, nothing deleted (the old check
    # also passed for a plan that did nothing at all).
    assert patched(steps)[P + "storage.pod.phase"] == "Running"
    assert patched(steps)[P + "storage.condition.running"] == "true"
    assert not [s for s in steps if isinstance(s, Delete)]


def _just_now(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_source_pod_refused_by_the_scheduler_for_a_deleting_source_fails_the_clone(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    pending = source_pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})
    steps = clones.plan(seen(pvc, src=source_pvc(deleting=True, deleted_at=_just_now(1)),
                             pod=server(), srcpod=pending))
    assert patched(steps)[P + "storage.pod.phase"] != "Failed"  # it may still start
    pending["status"]["conditions"].append({
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": 'persistentvolumeclaim "src" is being deleted'})
    steps = clones.plan(seen(pvc, src=source_pvc(deleting=True), pod=server(),
                             srcpod=pending))
    assert patched(steps)[P + "storage.pod.phase"] == "Failed"


def test_only_an_authorised_target_may_look_at_its_source_namespace(clones, key):
    assert clones.may_read_source(target())
    assert not clones.may_read_source(target(source="src-ns/src"))
    assert not clones.may_read_source(target(source="nonsense"))
    ok = target(source="src-ns/src", annotations={clone.EXTENDED_TOKEN_ANNOTATION: token(
        key, now=datetime.now(UTC), lifetime=clonetoken.EXTENDED_LIFETIME)})
    assert clones.may_read_source(ok)


def test_a_source_pod_that_never_ran_before_its_source_went_fails_the_clone(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    pending = source_pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})
    steps = clones.plan(seen(pvc, src=None, pod=server(), srcpod=pending))
    assert patched(steps)[P + "storage.pod.phase"] == "Failed"
    assert patched(steps)[MESSAGE] == ("The source pvc ns/src was deleted before the clone "
                                       "could read it")
    assert events(steps)[0][:2] == ("Warning", "CloneFailed")


def test_a_permanent_source_failure_fails_the_clone(clones):
    report = TerminationReport(Reason.INVALID_IMAGE, "not a disk image").to_json()
    failed = source_pod(state={"waiting": {"reason": "CrashLoopBackOff"}},
                        last=f.terminated(1, report))
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=failed))
    assert patched(steps)[P + "storage.pod.phase"] == "Failed"
    assert "not a disk image" in patched(steps)[MESSAGE]


def test_an_evicted_source_pod_is_replaced(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    evicted = source_pod(phase="Failed", state={"terminated": {"exitCode": 137}})
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=evicted))
    assert Delete(kube.PODS, "ns", clone.source_pod_name("tgt-uid"), "pod-uid") in steps


# ---- the end ------------------------------------------------------------------------


def _done_server():
    report = TerminationReport(Reason.COMPLETED, "Clone Complete").to_json()
    return server(ready=False, phase="Succeeded", state=f.terminated(0, report, "Completed"))


def test_success_cleans_both_namespaces_and_marks_the_target(clones, key):
    pvc = target(source="src-ns/src", finalizers=[objects.FINALIZER], annotations={
        clone.EXTENDED_TOKEN_ANNOTATION: token(key, lifetime=clonetoken.EXTENDED_LIFETIME)})
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns"), pod=_done_server(),
                             srcpod=source_pod("src-ns", phase="Succeeded")))
    deletes = [(s.resource.plural, s.namespace, s.name) for s in steps if isinstance(s, Delete)]
    assert deletes == [("pods", "src-ns", clone.source_pod_name("tgt-uid")),
                       ("secrets", "src-ns", clone.client_secret_name("tgt-uid")),
                       ("secrets", "ns", "cdi-upload-tgt"),
                       ("services", "ns", "cdi-upload-tgt"),
                       ("pods", "ns", "cdi-upload-tgt")]
    got = patched(steps)
    assert got[P + "storage.pod.phase"] == "Succeeded"
    assert got[MESSAGE] == "Clone Complete"
    assert got[clone.CLONE_OF_ANNOTATION] == "true"
    assert ("Normal", "CloneSucceeded", "Successfully cloned from src-ns/src into ns/tgt") \
        in events(steps)
    assert Recheck(2.0) in steps


def test_the_finalizer_comes_off_alone_once_the_source_pod_is_gone(clones):
    pvc = target(finalizers=["kubernetes.io/pvc-protection", objects.FINALIZER],
                 annotations={P + "storage.pod.phase": "Succeeded",
                              clone.CLONE_OF_ANNOTATION: "true"})
    steps = clones.plan(seen(pvc, src=source_pvc()))
    assert steps == [Delete(kube.SECRETS, "ns", clone.client_secret_name("tgt-uid")),
                     Patch(kube.PVCS, "ns", "tgt", {"metadata": {
                         "finalizers": ["kubernetes.io/pvc-protection"],
                         "resourceVersion": "7"}})]


def test_a_target_deleted_mid_clone_removes_the_source_namespaces_objects(clones):
    pvc = target(source="src-ns/src", finalizers=[objects.FINALIZER], deleting=True)
    steps = clones.plan(seen(pvc, src=source_pvc("src-ns"), pod=server(),
                             srcpod=source_pod("src-ns")))
    deletes = [(s.resource.plural, s.namespace, s.name) for s in steps if isinstance(s, Delete)]
    assert ("pods", "src-ns", clone.source_pod_name("tgt-uid")) in deletes
    assert ("secrets", "src-ns", clone.client_secret_name("tgt-uid")) in deletes
    assert ("pods", "ns", "cdi-upload-tgt") in deletes
    assert creates(steps) == []
    assert Recheck(2.0) in steps
    assert clone.CLONE_OF_ANNOTATION not in patched(steps)
    gone = clones.plan(seen(pvc, src=source_pvc("src-ns")))
    assert gone[-1] == Patch(kube.PVCS, "ns", "tgt", {"metadata": {
        "finalizers": [], "resourceVersion": "7"}})


def test_a_failed_server_fails_the_clone_and_cleans_up(clones):
    report = TerminationReport(Reason.IMAGE_TOO_LARGE, "does not fit").to_json()
    failed = server(ready=False, state=f.terminated(1, report))
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=failed, srcpod=source_pod()))
    assert patched(steps)[P + "storage.pod.phase"] == "Failed"
    assert events(steps)[0][:2] == ("Warning", "CloneFailed")
    assert Delete(kube.PODS, "ns", clone.source_pod_name("tgt-uid"), "pod-uid") in steps


def test_datavolume_events_can_name_source_and_target_as_cdi_does():
    from cdicontract import api
    from controller.transfers.clone.transfer import phases_for

    p = phases_for(("gold", "img"), ("team", "vm-disk"))
    assert p.events[api.PHASE_SUCCEEDED][2].format(pvc="vm-disk", msg="") == \
        "Successfully cloned from gold/img into team/vm-disk"
    assert p.events[api.PHASE_FAILED][2].format(pvc="vm-disk", msg="boom") == \
        "Cloning from gold/img into team/vm-disk failed: boom"
    assert p.progress_metric == "kubevirt_cdi_clone_progress_total"


def test_a_scheduled_source_pod_that_never_starts_on_a_deleting_source_fails_after_a_grace(
        clones):
    """Scheduled before the delete, it waits in ContainerCreating for good (no node mounts
    a claim being deleted): a short grace for a start already under way, then failed."""
    pvc = target(finalizers=[objects.FINALIZER])
    pending = source_pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})
    steps = clones.plan(seen(pvc, src=source_pvc(deleting=True, deleted_at=_just_now(5)),
                             pod=server(), srcpod=pending))
    assert patched(steps)[P + "storage.pod.phase"] != "Failed"
    assert [s.seconds for s in steps if isinstance(s, Recheck)] == [15.0]
    steps = clones.plan(seen(pvc, src=source_pvc(deleting=True, deleted_at=_just_now(21)),
                             pod=server(), srcpod=pending))
    assert patched(steps)[P + "storage.pod.phase"] == "Failed"
    assert patched(steps)[MESSAGE] == ("The source pvc ns/src was deleted before the clone "
                                       "could read it")


def test_a_source_pod_that_cannot_pull_its_image_is_said_on_the_target_then_cleared(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    image = "quay.io/cdi-py/cloner:nope"
    stuck = source_pod(phase="Pending", state={"waiting": {
        "reason": "ErrImagePull", "message": "manifest unknown"}})
    stuck["spec"] = {"containers": [{"name": "cdi-clone-source", "image": image}]}
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=stuck))
    said = patched(steps)
    assert said[objects.SOURCE_RUNNING] == "false"
    assert said[objects.SOURCE_RUNNING_REASON] == "ImagePullFailed"
    assert said[objects.SOURCE_RUNNING_MESSAGE] == (
        f"failed to pull image: {image}: ErrImagePull: manifest unknown")
    assert P + "storage.pod.phase" not in said or said[P + "storage.pod.phase"] != "Failed"
    # Said once: the same world writes it again never.
    pvc["metadata"]["annotations"].update(said)
    assert objects.SOURCE_RUNNING not in patched(
        clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=stuck)))
    # Pulled and running: the source side says so.
    running = source_pod()
    running["spec"] = stuck["spec"]
    cleared = patched(clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=running)))
    assert cleared[objects.SOURCE_RUNNING] == "true"
    assert cleared[objects.SOURCE_RUNNING_REASON] == "Pod is running"


def test_a_running_source_pod_writes_no_source_condition(clones):
    pvc = target(finalizers=[objects.FINALIZER])
    steps = clones.plan(seen(pvc, src=source_pvc(), pod=server(), srcpod=source_pod()))
    assert objects.SOURCE_RUNNING not in patched(steps)

"""The DataVolume side of a clone, decided purely: which source, whether it may be cloned
(the admission token, verified for exactly this source and target), what the target PVC
carries for the clone transfer, and which strategy with which fallback."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import clone, clonetoken
from controller import clonerequest, clonesource
from controller.clonesource import PVC, SNAPSHOT, Source, Wait
from tests.controller import clonefactories as cf
from tests.controller import factories as f

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key, *, src=("golden-ns", "golden"), dst=("ns", "target"), kind=PVC,
           now=NOW, lifetime=clonetoken.LIFETIME):
    return clonetoken.sign(key, clonetoken.CloneRef(*src, *dst, kind), now=now,
                           lifetime=lifetime)


def _cross(key, token):
    dv = cf.clone_dv(src_ns="golden-ns", token=token)
    src = cf.source_pvc(ns="golden-ns", capacity="1Gi")
    return clonerequest.target(dv, Source(PVC, "golden-ns", "golden"), src, cf.world(),
                               key=key, now=NOW)


# ---- sources ------------------------------------------------------------------------

def test_source_pvc_namespace_defaults_to_the_datavolumes():
    assert clonesource.resolve(cf.clone_dv(), None) == Source(PVC, "ns", "golden")
    assert clonesource.resolve(cf.clone_dv(src_ns="other"), None) == Source(PVC, "other",
                                                                           "golden")


def test_source_snapshot_is_a_snapshot_source():
    dv = f.dv(source={"snapshot": {"name": "snap", "namespace": "ns"}})
    assert clonesource.resolve(dv, None) == Source(SNAPSHOT, "ns", "snap")


def _ref_dv(ns=None):
    ref = {"kind": "DataSource", "name": "fedora"}
    if ns:
        ref["namespace"] = ns
    dv = f.dv(source={}, sourceRef=ref, storage={})
    del dv["spec"]["source"]
    return dv


def _ds(ready, *, pvc=("golden-ns", "golden")):
    return {"metadata": {"name": "fedora", "namespace": "golden-ns"},
            "spec": {"source": {"pvc": {"namespace": pvc[0], "name": pvc[1]}}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "Ready" if ready else "NotFound",
                                       "message": "ok" if ready else "PVC not found"}]}}


def test_sourceref_to_a_missing_datasource_waits_and_says_which():
    got = clonesource.resolve(_ref_dv("golden-ns"), None)
    assert got == Wait("CloneWithoutSource", "The source datasource golden-ns/fedora doesn't exist")


def test_sourceref_to_a_datasource_not_ready_waits_with_its_reason():
    got = clonesource.resolve(_ref_dv("golden-ns"), _ds(False))
    assert got == Wait("DataSourceNotReady",
                       "DataSource golden-ns/fedora is not ready: PVC not found")


def test_sourceref_to_a_datasource_never_reconciled_waits():
    ds = _ds(True)
    ds["status"] = {}
    got = clonesource.resolve(_ref_dv("golden-ns"), ds)
    assert isinstance(got, Wait) and got.reason == "DataSourceNotReady"


def test_sourceref_to_a_ready_datasource_is_its_pvc():
    assert clonesource.resolve(_ref_dv("golden-ns"), _ds(True)) == Source(PVC, "golden-ns",
                                                                         "golden")


def test_sourceref_namespace_defaults_to_the_datavolumes():
    assert clonesource.datasource_ref(_ref_dv()) == ("ns", "fedora")


def test_index_keys_name_what_each_object_waits_on():
    assert clonesource.dv_index_keys(cf.clone_dv(src_ns="g")) == [
        "PersistentVolumeClaim/g/golden"]
    assert clonesource.dv_index_keys(_ref_dv("g")) == ["DataSource/g/fedora"]
    assert clonesource.datasource_index_keys(_ds(False)) == [
        "PersistentVolumeClaim/golden-ns/golden"]
    assert clonesource.dv_index_keys(f.dv()) == []


def test_only_pvc_snapshot_and_sourceref_sources_are_clones():
    assert clonesource.is_clone(cf.clone_dv())
    assert clonesource.is_clone(_ref_dv())
    assert not clonesource.is_clone(f.dv(source={"http": {"url": "http://x"}}))
    assert not clonesource.is_clone(f.dv(source={"upload": {}}))


# ---- authorization --------------------------------------------------------------------

def test_same_namespace_needs_no_token():
    t = clonerequest.target(cf.clone_dv(), Source(PVC, "ns", "golden"),
                            cf.source_pvc(capacity="1Gi"), cf.world(), key=None, now=NOW)
    assert isinstance(t, clonerequest.Target)
    assert clone.EXTENDED_TOKEN_ANNOTATION not in t.annotations


def test_cross_namespace_without_token_is_refused_with_cdis_message(key):
    assert _cross(key, None) == clonerequest.Refusal(
        "CloneValidationFailed",
        "The clone doesn't meet the validation requirements: no clone token")


def test_cross_namespace_with_a_forged_token_is_refused(key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = _cross(key, _token(other))
    assert isinstance(r, clonerequest.Refusal) and r.reason == "CloneValidationFailed"
    assert "invalid clone token" in r.message


def test_cross_namespace_with_an_expired_token_is_refused(key):
    r = _cross(key, _token(key, now=NOW - timedelta(hours=1)))
    assert r == clonerequest.validation_failed("clone token expired")


def test_a_token_for_another_source_or_target_is_refused(key):
    assert _cross(key, _token(key, src=("golden-ns", "other"))) == (
        clonerequest.validation_failed("clone token is for another source"))
    assert _cross(key, _token(key, dst=("ns", "someone-else"))) == (
        clonerequest.validation_failed("clone token is for another target"))
    assert _cross(key, _token(key, kind=SNAPSHOT)) == (
        clonerequest.validation_failed("clone token is not for a PersistentVolumeClaim"))


def test_a_tampered_token_is_refused(key):
    token = _token(key)
    head, body, sig = token.split(".")
    tampered = ".".join((head, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig))
    r = _cross(key, tampered)
    assert isinstance(r, clonerequest.Refusal) and r.reason == "CloneValidationFailed"


def test_no_key_loaded_refuses_cross_namespace():
    r = clonerequest.check_token(cf.clone_dv(src_ns="g", token="x"), Source(PVC, "g", "golden"),
                                 None)
    assert r == clonerequest.validation_failed("the controller has no clone token key yet")


def test_a_valid_token_gives_the_target_a_long_lived_re_signed_token(key):
    t = _cross(key, _token(key))
    assert isinstance(t, clonerequest.Target)
    ext = t.pvc["metadata"]["annotations"][clone.EXTENDED_TOKEN_ANNOTATION]
    ref = clonetoken.CloneRef("golden-ns", "golden", "ns", "target")
    expires = clonetoken.verify(ext, key.public_key(), ref, now=NOW + timedelta(days=30))
    assert expires >= NOW + clonetoken.EXTENDED_LIFETIME
    assert t.pvc["metadata"]["annotations"][clone.CLONE_REQUEST_ANNOTATION] == "golden-ns/golden"


# ---- the wait for a source outlives the short token --------------------------------------

def _with(dv, **annotations):
    dv["metadata"]["annotations"].update(annotations)
    return dv


def test_the_token_is_verified_before_the_source_exists_and_recorded_long_lived(key):
    dv = cf.clone_dv(src_ns="golden-ns", token=_token(key))
    named = clonerequest.token_source(dv, None)
    assert named == Source(PVC, "golden-ns", "golden")
    recorded = clonerequest.authorize(dv, named, key, now=NOW)
    assert set(recorded) == {clone.EXTENDED_TOKEN_ANNOTATION}
    ref = clonetoken.CloneRef("golden-ns", "golden", "ns", "target")
    extended = recorded[clone.EXTENDED_TOKEN_ANNOTATION]
    assert clonetoken.verify(extended, key.public_key(), ref, now=NOW) >= (
        NOW + clonetoken.EXTENDED_LIFETIME)
    # Recorded once: the next look adds nothing.
    assert clonerequest.authorize(_with(dv, **recorded), named, key, now=NOW) == {}


def test_a_source_appearing_after_the_short_token_expired_is_still_cloned(key):
    later = NOW + clonetoken.LIFETIME + timedelta(hours=2)
    dv = cf.clone_dv(src_ns="golden-ns", token=_token(key))
    recorded = clonerequest.authorize(dv, Source(PVC, "golden-ns", "golden"), key, now=NOW)
    assert isinstance(recorded, dict) and recorded
    src = cf.source_pvc(ns="golden-ns", capacity="1Gi")
    source = Source(PVC, "golden-ns", "golden")
    # Without the recording, the short token alone has expired by now ...
    assert clonerequest.target(dv, source, src, cf.world(), key=key, now=later) == (
        clonerequest.validation_failed("clone token expired"))
    # ... with it, the clone goes ahead when the source appears.
    waited = _with(cf.clone_dv(src_ns="golden-ns", token=_token(key)), **recorded)
    assert clonerequest.authorize(waited, source, key, now=later) == {}
    t = clonerequest.target(waited, source, src, cf.world(), key=key, now=later)
    assert isinstance(t, clonerequest.Target)
    assert t.annotations[clone.CLONE_REQUEST_ANNOTATION] == "golden-ns/golden"


def test_a_bad_extended_token_is_refused_beside_a_valid_short_one(key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    source = Source(PVC, "golden-ns", "golden")
    long = clonetoken.EXTENDED_LIFETIME
    for extended, why in (
            (_token(other, lifetime=long), "invalid clone token"),
            (_token(key, dst=("ns", "someone-else"), lifetime=long),
             "clone token is for another target"),
            (_token(key, src=("golden-ns", "other"), lifetime=long),
             "clone token is for another source")):
        dv = _with(cf.clone_dv(src_ns="golden-ns", token=_token(key)),
                   **{clone.EXTENDED_TOKEN_ANNOTATION: extended})
        r = clonerequest.authorize(dv, source, key, now=NOW)
        assert isinstance(r, clonerequest.Refusal) and r.reason == "CloneValidationFailed"
        assert why in r.message and extended not in r.message
        got = clonerequest.target(dv, source, cf.source_pvc(ns="golden-ns", capacity="1Gi"),
                                  cf.world(), key=key, now=NOW)
        assert isinstance(got, clonerequest.Refusal)


def test_the_recorded_token_is_for_this_datavolume_object_only(key):
    source = Source(PVC, "golden-ns", "golden")
    first = cf.clone_dv(src_ns="golden-ns", token=_token(key))
    recorded = clonerequest.authorize(first, source, key, now=NOW)
    assert isinstance(recorded, dict)
    # Copied onto a new DataVolume of the same name (another UID): refused, even though
    # it names the same source and target.
    again = _with(cf.clone_dv(src_ns="golden-ns"), **recorded)
    again["metadata"]["uid"] = "another-uid"
    assert clonerequest.authorize(again, source, key, now=NOW) == (
        clonerequest.validation_failed("clone token is for another target object"))
    # A long-lived token that names no object at all is not one the controller recorded.
    unbound = _with(cf.clone_dv(src_ns="golden-ns"), **{
        clone.EXTENDED_TOKEN_ANNOTATION: _token(key, lifetime=clonetoken.EXTENDED_LIFETIME)})
    assert clonerequest.authorize(unbound, source, key, now=NOW) == (
        clonerequest.validation_failed("clone token is for another target object"))


def test_an_invalid_short_token_is_refused_before_the_source_exists(key):
    dv = cf.clone_dv(src_ns="golden-ns", token=_token(key, now=NOW - timedelta(hours=1)))
    assert clonerequest.authorize(dv, Source(PVC, "golden-ns", "golden"), key, now=NOW) == (
        clonerequest.validation_failed("clone token expired"))
    assert clonerequest.authorize(cf.clone_dv(src_ns="golden-ns"),
                                  Source(PVC, "golden-ns", "golden"), key, now=NOW) == (
        clonerequest.validation_failed("no clone token"))


def test_same_namespace_records_nothing(key):
    assert clonerequest.authorize(cf.clone_dv(), Source(PVC, "ns", "golden"), key,
                                  now=NOW) == {}


def test_a_sourceref_token_names_what_the_datasource_points_at_ready_or_not():
    assert clonerequest.token_source(_ref_dv("golden-ns"), _ds(False)) == (
        Source(PVC, "golden-ns", "golden"))
    assert clonerequest.token_source(_ref_dv("golden-ns"), None) is None
    no_source = _ds(False)
    no_source["spec"] = {}
    assert clonerequest.token_source(_ref_dv("golden-ns"), no_source) is None


# ---- the target PVC ------------------------------------------------------------------

def _same(world=None, dv=None, src=None):
    return clonerequest.target(dv or cf.clone_dv(), Source(PVC, "ns", "golden"),
                               src or cf.source_pvc(capacity="1Gi"), world or cf.world(),
                               key=None, now=NOW)


def test_a_copy_target_carries_the_clone_request_type_and_content_type():
    t = _same()
    assert isinstance(t, clonerequest.Target)
    a = t.pvc["metadata"]["annotations"]
    assert a[clone.CLONE_REQUEST_ANNOTATION] == "ns/golden"
    assert a[clone.CLONE_TYPE_ANNOTATION] == "copy"
    assert a["cdi.kubevirt.io/storage.contentType"] == "kubevirt"
    assert t.pvc["metadata"]["name"] == "target"
    assert t.pvc["metadata"]["ownerReferences"][0]["kind"] == "DataVolume"


def test_content_types_must_match():
    r = _same(src=cf.source_pvc(capacity="1Gi", content_type="archive"))
    assert r == clonerequest.validation_failed(
        "Source contentType (archive) and target contentType (kubevirt) do not match")
    ok = _same(dv=cf.clone_dv(contentType="archive"),
               src=cf.source_pvc(capacity="1Gi", content_type="archive"))
    assert isinstance(ok, clonerequest.Target)
    assert ok.annotations["cdi.kubevirt.io/storage.contentType"] == "archive"


def test_in_tree_storage_falls_back_to_copy_with_the_reason_recorded():
    t = _same(cf.world(profile_strategy="csi-clone"))
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.COPY
    assert t.fallback == ("NoPopulator", "In tree storage class does not support snapshot/clone")
    assert t.pvc["metadata"]["annotations"][clone.FALLBACK_REASON_ANNOTATION] == (
        "In tree storage class does not support snapshot/clone")


def test_a_profile_asking_for_copy_does_not_fall_back():
    t = _same(cf.world(profile_strategy="copy"))
    assert isinstance(t, clonerequest.Target)
    assert t.fallback is None
    assert clone.FALLBACK_REASON_ANNOTATION not in t.pvc["metadata"]["annotations"]


def test_csi_clone_on_a_csi_class_is_chosen_and_leaves_the_pvc_to_the_storage():
    t = _same(cf.world(profile_strategy="csi-clone", csi_drivers=frozenset({"local.cdi-py"}), expansion=True))
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.CSI_CLONE
    # Not a CloneRequest: the clone transfer must not start a source pod for it.
    assert clone.CLONE_REQUEST_ANNOTATION not in t.pvc["metadata"]["annotations"]
    assert t.pvc["metadata"]["annotations"][clone.CLONE_TYPE_ANNOTATION] == "csi-clone"


def test_a_grown_filesystem_target_on_a_class_without_expansion_falls_back():
    t = _same(cf.world(profile_strategy="csi-clone", csi_drivers=frozenset({"local.cdi-py"})))
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.COPY
    assert t.fallback is not None and t.fallback[0] == "NoVolumeExpansion"


def test_csi_clone_across_namespaces_falls_back_to_copy(key):
    dv = cf.clone_dv(src_ns="golden-ns", token=_token(key))
    t = clonerequest.target(dv, Source(PVC, "golden-ns", "golden"),
                            cf.source_pvc(ns="golden-ns", capacity="1Gi"),
                            cf.world(profile_strategy="csi-clone",
                                     csi_drivers=frozenset({"local.cdi-py"}), expansion=True),
                            key=key, now=NOW)
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.COPY
    assert t.fallback is not None and t.fallback[0] == "CrossNamespaceSmartClone"


def test_snapshot_strategy_names_its_snapshot_class():
    vsc = {"metadata": {"name": "vsc"}, "driver": "local.cdi-py", "deletionPolicy": "Delete"}
    t = _same(cf.world(profile_strategy="snapshot", csi_drivers=frozenset({"local.cdi-py"}),
                       snapshot_classes=(vsc,), expansion=True))
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.SNAPSHOT
    assert t.snapshot_class == "vsc"


def test_a_snapshot_source_no_driver_can_restore_is_refused_not_copied():
    dv = f.dv("target", source={"snapshot": {"name": "snap"}}, storage={})
    snap = {"metadata": {"name": "snap", "namespace": "ns"}, "spec": {},
            "status": {"restoreSize": "1Gi", "readyToUse": True}}
    r = clonerequest.target(dv, Source(SNAPSHOT, "ns", "snap"), snap, cf.world(), key=None,
                            now=NOW)
    assert isinstance(r, clonerequest.Refusal)
    assert "cannot be restored" in r.message


def test_a_snapshot_source_restored_by_its_own_driver():
    dv = f.dv("target", source={"snapshot": {"name": "snap"}}, storage={})
    snap = {"metadata": {"name": "snap", "namespace": "ns"}, "spec": {},
            "status": {"restoreSize": "1Gi", "readyToUse": True,
                       "boundVolumeSnapshotContentName": "c"}}
    content = {"metadata": {"name": "c"}, "spec": {"driver": "local.cdi-py"}}
    t = clonerequest.target(dv, Source(SNAPSHOT, "ns", "snap"), snap,
                            cf.world(csi_drivers=frozenset({"local.cdi-py"}), expansion=True), key=None,
                            now=NOW, snapshot_content=content)
    assert isinstance(t, clonerequest.Target)
    assert t.strategy == clone.Strategy.SNAPSHOT


def test_a_created_target_names_its_source_for_messages():
    from controller.clonedv import recorded_source
    dv = cf.clone_dv()
    copy_pvc = f.pvc("target", annotations={clone.CLONE_REQUEST_ANNOTATION: "g/golden"})
    assert recorded_source(dv, copy_pvc) == Source(PVC, "g", "golden")
    csi_pvc = f.pvc("target")
    csi_pvc["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": "golden"}
    assert recorded_source(dv, csi_pvc) == Source(PVC, "ns", "golden")
    csi_pvc["spec"]["dataSource"] = {"kind": "VolumeSnapshot", "name": "s",
                                     "apiGroup": "snapshot.storage.k8s.io"}
    assert recorded_source(dv, csi_pvc) == Source(SNAPSHOT, "ns", "s")

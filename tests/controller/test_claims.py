from controller import claims
from controller.cdiconfig import EffectiveConfig, effective
from controller.transfers.importing import source as importsource
from tests.controller import factories as f

SCS = [f.storage_class("local", default=True), f.storage_class("other")]


def profile(*sets):
    return {"status": {"claimPropertySets": list(sets)}}


def test_literal_pvc_spec_is_used_unchanged():
    literal = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}},
               "storageClassName": "other"}
    spec = claims.claim_spec(f.dv(pvc=literal), SCS, {}, EffectiveConfig())
    assert spec == literal


def test_storage_takes_default_class_profile_modes_and_inflates_filesystem():
    profiles = {"local": profile({"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"})}
    spec = claims.claim_spec(f.dv(), SCS, profiles, EffectiveConfig())
    assert spec == {
        "storageClassName": "local",
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": "1142278537"}},  # CDI's figure
    }


def test_storage_block_mode_from_profile_is_not_inflated():
    profiles = {"local": profile({"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"})}
    spec = claims.claim_spec(f.dv(), SCS, profiles, EffectiveConfig())
    assert isinstance(spec, dict)
    assert spec["volumeMode"] == "Block"
    assert spec["resources"]["requests"]["storage"] == "1Gi"


def test_virt_default_class_wins_over_cluster_default():
    scs = [*SCS, f.storage_class("virt", virt_default=True)]
    spec = claims.claim_spec(f.dv(), scs, {}, EffectiveConfig())
    assert isinstance(spec, dict) and spec["storageClassName"] == "virt"


def test_per_class_overhead_from_cdiconfig_applies():
    cfg = effective({"spec": {"filesystemOverhead": {"global": "0.1",
                                                     "storageClass": {"local": "0"}}}}, SCS)
    spec = claims.claim_spec(f.dv(), SCS, {}, cfg)
    assert isinstance(spec, dict) and spec["resources"]["requests"]["storage"] == "1Gi"
    other = claims.claim_spec(
        f.dv(storage={"storageClassName": "other",
                      "resources": {"requests": {"storage": "1Gi"}}}), SCS, {}, cfg)
    assert isinstance(other, dict)
    assert other["resources"]["requests"]["storage"] == "1193046472"  # ceil(1Gi / 0.9)


def test_given_access_modes_pick_the_matching_property_set():
    profiles = {"local": profile({"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
                                 {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"})}
    dv = f.dv(storage={"accessModes": ["ReadWriteMany"],
                       "resources": {"requests": {"storage": "1Gi"}}})
    spec = claims.claim_spec(dv, SCS, profiles, EffectiveConfig())
    assert isinstance(spec, dict) and spec["volumeMode"] == "Block"


def test_storage_without_size_is_a_claim_error():
    err = claims.claim_spec(f.dv(storage={}), SCS, {}, EffectiveConfig())
    assert isinstance(err, claims.ClaimError) and "requests.storage" in err.message


def test_pvc_is_owned_by_the_datavolume_and_carries_the_import_annotations():
    dv = f.dv(source={"http": {"url": "http://x/a.img", "checksum": "sha256:" + "0" * 64,
                               "secretRef": "creds", "extraHeaders": ["A: b"]}},
              annotations={"cdi.kubevirt.io/storage.bind.immediate.requested": "",
                           "unrelated": "x"})
    anns = importsource.pvc_annotations(dv)
    assert isinstance(anns, dict)
    spec = claims.claim_spec(dv, SCS, {}, EffectiveConfig())
    assert isinstance(spec, dict)
    pvc = claims.build_pvc(dv, spec, anns)
    assert pvc["metadata"]["ownerReferences"] == [{
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "dv1",
        "uid": "dv-uid", "controller": True, "blockOwnerDeletion": True}]
    a = pvc["metadata"]["annotations"]
    assert a["cdi.kubevirt.io/storage.import.endpoint"] == "http://x/a.img"
    assert a["cdi.kubevirt.io/storage.import.source"] == "http"
    assert a["cdi.kubevirt.io/storage.import.secretName"] == "creds"
    assert "cdi.kubevirt.io/storage.bind.immediate.requested" in a
    assert a["unrelated"] == "x"  # CDI passes every DataVolume annotation on
    req = importsource.ImportRequest.from_pvc(pvc)
    assert req is not None
    assert req.extra_headers == ("A: b",) and req.checksum == "sha256:" + "0" * 64


def test_no_class_and_no_default_keeps_the_datavolume_pending_in_cdis_words():
    out = claims.claim_spec(f.dv(), [f.storage_class("local")], {}, EffectiveConfig())
    assert out == claims.ClaimError("ErrClaimNotValid", claims.NO_CLASS_MESSAGE)
    given = f.dv(storage={"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": "1Gi"}}})
    assert not isinstance(claims.claim_spec(given, [], {}, EffectiveConfig()), claims.ClaimError)

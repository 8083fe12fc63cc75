"""A clone target's size: its own (never below the source), else the source's, grown by the
filesystem overhead for a Filesystem target (CDI's detectCloneSize + InflateSizeWithOverhead
and ValidateRequestedCloneSize)."""

from controller import clonerequest
from controller.clonesource import PVC, Source
from tests.controller import clonefactories as cf

SRC = Source(PVC, "ns", "golden")


def _target(dv, source, world=None):
    return clonerequest.target(dv, SRC, source, world or cf.world(), key=None)


def _size(t):
    assert isinstance(t, clonerequest.Target), t
    return t.pvc["spec"]["resources"]["requests"]["storage"]


def test_an_empty_size_takes_the_source_capacity_grown_by_the_overhead():
    # CDI's figure: ceil(1Gi / (1 - 0.06)) bytes, not rounded to a MiB.
    t = _target(cf.clone_dv(), cf.source_pvc(size="1Gi", capacity="1Gi"))
    assert _size(t) == "1142278537"


def test_an_empty_size_prefers_the_capacity_over_the_request():
    t = _target(cf.clone_dv(), cf.source_pvc(size="1Gi", capacity="2Gi"),
                cf.world(overhead="0"))
    assert _size(t) == "2Gi"


def test_an_empty_size_without_capacity_takes_the_request():
    t = _target(cf.clone_dv(), cf.source_pvc(size="3Gi"), cf.world(overhead="0"))
    assert _size(t) == "3Gi"


def test_a_block_target_takes_the_source_size_exactly():
    t = _target(cf.clone_dv(), cf.source_pvc(capacity="1Gi"), cf.world(block=True))
    assert _size(t) == "1Gi"
    assert t.pvc["spec"]["volumeMode"] == "Block"


def test_a_spec_pvc_target_without_size_takes_the_source_size_literally():
    dv = cf.clone_dv(storage=None)
    del dv["spec"]["storage"]
    dv["spec"]["pvc"] = {"accessModes": ["ReadWriteOnce"], "storageClassName": "local"}
    t = _target(dv, cf.source_pvc(capacity="5Gi"))
    assert _size(t) == "5Gi"


def test_a_target_smaller_than_the_source_is_refused_with_cdis_message():
    dv = cf.clone_dv(storage={"resources": {"requests": {"storage": "512Mi"}}})
    r = _target(dv, cf.source_pvc(size="1Gi"))
    assert r == clonerequest.Refusal(
        "ErrIncompatiblePVC",
        "target resources requests storage size is smaller than the source "
        f"{512 << 20} < {1 << 30}")


def test_a_target_the_size_of_the_source_is_accepted_and_grown_for_filesystem():
    dv = cf.clone_dv(storage={"resources": {"requests": {"storage": "1Gi"}}})
    assert _size(_target(dv, cf.source_pvc(size="1Gi"))) == "1142278537"


def test_a_larger_target_keeps_its_size():
    dv = cf.clone_dv(storage={"resources": {"requests": {"storage": "4Gi"}}})
    assert _size(_target(dv, cf.source_pvc(size="1Gi"), cf.world(overhead="0"))) == "4Gi"


def test_an_unparsable_target_size_is_a_claim_error():
    dv = cf.clone_dv(storage={"resources": {"requests": {"storage": "lots"}}})
    r = _target(dv, cf.source_pvc())
    assert isinstance(r, clonerequest.Refusal) and r.reason == "ErrClaimNotValid"


def test_a_source_of_unknown_size_makes_an_empty_target_wait():
    src = cf.source_pvc()
    del src["spec"]["resources"]
    r = _target(cf.clone_dv(), src)
    assert isinstance(r, clonerequest.Refusal) and r.reason == "ErrIncompatiblePVC"


def test_a_snapshot_source_is_sized_by_its_restore_size():
    snap = {"kind": "VolumeSnapshot", "metadata": {"name": "s", "namespace": "ns"},
            "status": {"restoreSize": "2Gi"}}
    assert clonerequest.source_size(snap, "VolumeSnapshot") == 2 << 30
    assert clonerequest.source_request(snap, "VolumeSnapshot") == 2 << 30


def test_the_dv_is_not_changed_by_sizing():
    dv = cf.clone_dv()
    _target(dv, cf.source_pvc(capacity="1Gi"))
    assert dv["spec"]["storage"] == {}


def test_a_block_source_into_a_filesystem_target_grows_by_the_overhead():
    t = _target(cf.clone_dv(), cf.source_pvc(capacity="1Gi", mode="Block"))
    assert _size(t) == "1142278537"
    assert t.pvc["spec"]["volumeMode"] == "Filesystem"


def test_a_filesystem_source_into_a_block_target_keeps_the_source_size():
    t = _target(cf.clone_dv(), cf.source_pvc(capacity="1Gi"), cf.world(block=True))
    assert (_size(t), t.pvc["spec"]["volumeMode"]) == ("1Gi", "Block")

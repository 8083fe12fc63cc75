"""DataVolume phases and events of a clone the storage does (csi-clone, snapshot)."""

from cdicontract import clone
from controller import dvstatus, smartclone
from tests.controller import factories as f

NOW = "2026-01-01T00:00:00Z"
CSI, SNAP = clone.Strategy.CSI_CLONE, clone.Strategy.SNAPSHOT


def test_csi_clone_is_in_progress_until_bound():
    assert smartclone.phase(CSI, from_snapshot=False, pvc=f.pvc(phase="Pending"),
                            wffc=False) == "CSICloneInProgress"
    assert smartclone.phase(CSI, from_snapshot=False, pvc=f.pvc(), wffc=False) == "Succeeded"


def test_snapshot_clone_goes_snapshot_then_pvc_then_succeeded():
    assert smartclone.phase(SNAP, from_snapshot=False, pvc=None, wffc=False) == (
        "SnapshotForSmartCloneInProgress")
    assert smartclone.phase(SNAP, from_snapshot=False, pvc=f.pvc(phase="Pending"),
                            wffc=False) == "SmartClonePVCInProgress"
    assert smartclone.phase(SNAP, from_snapshot=False, pvc=f.pvc(), wffc=False) == "Succeeded"


def test_a_snapshot_source_restore_and_wffc_and_lost():
    assert smartclone.phase(SNAP, from_snapshot=True, pvc=f.pvc(phase="Pending"),
                            wffc=False) == "CloneFromSnapshotSourceInProgress"
    assert smartclone.phase(CSI, from_snapshot=False, pvc=f.pvc(phase="Pending"),
                            wffc=True) == "WaitForFirstConsumer"
    assert smartclone.phase(CSI, from_snapshot=False, pvc=f.pvc(phase="Lost"),
                            wffc=False) == "Failed"


def _status(phase, pvc, old=None):
    dv = f.dv("target", source={"pvc": {"name": "golden"}}, status=old)
    return dvstatus.compute(dvstatus.Observed(
        dv, pvc, None, False, NOW, phases=smartclone.phases("ns", "golden", "ns", "target"),
        fixed_phase=phase))


def test_the_fixed_phase_is_reported_with_cdis_event():
    r = _status("CSICloneInProgress", f.pvc("target", phase="Pending"))
    assert r.phase == "CSICloneInProgress"
    assert [(e.reason, e.message) for e in r.events] == [
        ("CSICloneInProgress", "CSI Volume clone in progress (for pvc ns/golden)")]


def test_success_says_where_from_and_into():
    r = _status("Succeeded", f.pvc("target"), old={"phase": "CSICloneInProgress"})
    assert r.status["progress"] == "100.0%"
    assert ("CloneSucceeded", "Successfully cloned from ns/golden into ns/target") in [
        (e.reason, e.message) for e in r.events]


def test_a_wait_overrides_the_fixed_phase():
    dv = f.dv("target", source={"pvc": {"name": "golden"}})
    r = dvstatus.compute(dvstatus.Observed(
        dv, None, None, False, NOW, claim_error=("CloneWithoutSource", "The source pvc golden"
                                                 " doesn't exist"),
        fixed_phase="CSICloneInProgress"))
    assert r.phase == "Pending"
    bound = next(c for c in r.status["conditions"] if c["type"] == "Bound")
    assert (bound["reason"], bound["message"]) == ("CloneWithoutSource",
                                                   "The source pvc golden doesn't exist")
    assert [(e.type, e.reason) for e in r.events] == [("Warning", "CloneWithoutSource")]


def test_only_a_step_that_reads_the_source_waits_for_it():
    csi, snap, copy = clone.Strategy.CSI_CLONE, clone.Strategy.SNAPSHOT, clone.Strategy.COPY
    assert smartclone.reads_source_next(csi, snapshot_taken=False)
    assert smartclone.reads_source_next(snap, snapshot_taken=False)
    # Once the VolumeSnapshot is taken, the restore reads it, not the source.
    assert not smartclone.reads_source_next(snap, snapshot_taken=True)
    # The copy waits in its transfer (before its source pod).
    assert not smartclone.reads_source_next(copy, snapshot_taken=False)

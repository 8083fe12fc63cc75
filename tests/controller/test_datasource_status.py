"""A DataSource's Ready condition and mirrored source, with CDI's reasons and messages."""

from __future__ import annotations

import copy

import pytest

from controller import datasources as d
from tests.controller import factories as f

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def ds(name="fedora", source=None, status=None, namespace="golden"):
    out = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"source": source if source is not None
                    else {"pvc": {"namespace": "golden", "name": "fedora-img"}}}}
    if status is not None:
        out["status"] = status
    return out


def dv(phase):
    return f.dv("fedora-img", status={"phase": phase} if phase is not None else {})


def snap(ready=None):
    out = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
           "metadata": {"name": "fedora-snap", "namespace": "golden"}, "spec": {}}
    if ready is not None:
        out["status"] = {"readyToUse": ready}
    return out


def ready_of(status):
    (c,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return c["status"], c["reason"], c["message"]


# --- source_of ----------------------------------------------------------------------

@pytest.mark.parametrize(("source", "want"), [
    ({"pvc": {"namespace": "img", "name": "a"}}, ("PersistentVolumeClaim", "img", "a")),
    ({"pvc": {"name": "a"}}, ("PersistentVolumeClaim", "golden", "a")),
    ({"pvc": {"namespace": "", "name": "a"}}, ("PersistentVolumeClaim", "golden", "a")),
    ({"snapshot": {"namespace": "img", "name": "s"}}, ("VolumeSnapshot", "img", "s")),
    ({"snapshot": {"name": "s"}}, ("VolumeSnapshot", "golden", "s")),
    ({}, None),
    ({"pvc": {"namespace": "img"}}, None),
    ({"pvc": "garbage"}, None),
], ids=["pvc", "pvc-default-ns", "pvc-empty-ns", "snapshot", "snapshot-default-ns", "none",
        "no-name", "not-an-object"])
def test_source_of(source, want):
    assert d.source_of(ds(source=source)) == want


def test_source_of_without_a_spec():
    assert d.source_of({"metadata": {"name": "x"}}) is None


def test_source_of_a_reference_is_the_resolved_source_in_the_status():
    chained = ds(source={"dataSource": {"name": "base"}},
                 status={"source": {"pvc": {"namespace": "golden", "name": "base-img"}}})
    assert d.source_of(chained) == ("PersistentVolumeClaim", "golden", "base-img")
    assert d.source_of(ds(source={"dataSource": {"name": "base"}}, status={})) is None
    assert d.reference_of(chained) == ("golden", "base")


# --- status: a PVC source -----------------------------------------------------------

def test_pvc_present_without_a_datavolume_is_ready():
    st = d.status(ds(), pvc=f.pvc("fedora-img"), dv=None, snapshot=None, now=T0)
    assert ready_of(st) == ("True", "Ready", "DataSource is ready to be consumed")
    assert st["source"] == {"pvc": {"namespace": "golden", "name": "fedora-img"}}
    (c,) = st["conditions"]
    assert c["lastTransitionTime"] == T0 and c["lastHeartbeatTime"] == T0


def test_pvc_and_succeeded_datavolume_is_ready():
    st = d.status(ds(), pvc=f.pvc("fedora-img"), dv=dv("Succeeded"), snapshot=None, now=T0)
    assert ready_of(st)[0] == "True"


@pytest.mark.parametrize(("phase", "reason"), [
    ("ImportInProgress", "ImportInProgress"),
    ("ImportScheduled", "ImportScheduled"),
    ("Failed", "Failed"),
    ("CloneInProgress", "CloneInProgress"),
    (None, ""),
])
def test_datavolume_still_filling_the_pvc_names_its_phase(phase, reason):
    st = d.status(ds(), pvc=f.pvc("fedora-img"), dv=dv(phase), snapshot=None, now=T0)
    assert ready_of(st) == ("False", reason, f"Import DataVolume phase {reason}")
    assert st["source"] == {}


def test_missing_pvc_is_not_found():
    st = d.status(ds(), pvc=None, dv=None, snapshot=None, now=T0)
    assert ready_of(st) == ("False", "NotFound", "PVC not found")
    assert st["source"] == {}


def test_succeeded_datavolume_without_its_pvc_is_not_ready():
    st = d.status(ds(), pvc=None, dv=dv("Succeeded"), snapshot=None, now=T0)
    assert ready_of(st) == ("False", "NotFound", "PVC not found")


def test_no_source_at_all():
    st = d.status(ds(source={}), pvc=None, dv=None, snapshot=None, now=T0)
    assert ready_of(st) == ("False", "NoSource", "No source PVC set")


# --- status: a snapshot source ------------------------------------------------------

SNAP_SOURCE = {"snapshot": {"namespace": "golden", "name": "fedora-snap"}}


@pytest.mark.parametrize(("snapshot", "want"), [
    (snap(True), ("True", "Ready", "DataSource is ready to be consumed")),
    (snap(False), ("False", "SnapshotNotReady", "Snapshot phase is not ready")),
    (snap(None), ("False", "SnapshotNotReady", "Snapshot phase is not ready")),
    (None, ("False", "NotFound", "Snapshot not found")),
], ids=["ready", "not-ready", "no-status", "missing"])
def test_snapshot_source(snapshot, want):
    st = d.status(ds(source=SNAP_SOURCE), pvc=None, dv=None, snapshot=snapshot, now=T0)
    assert ready_of(st) == want
    assert st["source"] == (SNAP_SOURCE if want[0] == "True" else {})


# --- status: a reference to another DataSource --------------------------------------

def test_reference_resolves_to_the_referenced_source():
    base = ds("base", source={"pvc": {"namespace": "golden", "name": "base-img"}})
    chained = ds(source={"dataSource": {"namespace": "golden", "name": "base"}})
    st = d.status(chained, pvc=f.pvc("base-img"), dv=None, snapshot=None, now=T0,
                  referenced=base)
    assert ready_of(st)[0] == "True"
    assert st["source"] == {"pvc": {"namespace": "golden", "name": "base-img"}}
    assert d.source_of({**chained, "status": st}) == ("PersistentVolumeClaim", "golden",
                                                      "base-img")


@pytest.mark.parametrize(("ref", "referenced", "want"), [
    ({"namespace": "other", "name": "base"}, None,
     ("CrossNamespaceReference",
      "DataSource cannot reference a DataSource in another namespace")),
    ({"name": "fedora"}, None, ("SelfReference", "DataSource cannot self-reference")),
    ({"name": "base"}, None, ("NotFound", 'datasources.cdi.kubevirt.io "base" not found')),
    ({"name": "base"}, ds("wrong"),
     ("NotFound", 'datasources.cdi.kubevirt.io "base" not found')),
    ({"name": "base"}, ds("base", source={"dataSource": {"name": "deeper"}}),
     ("MaxReferenceDepthReached", "DataSource reference chain exceeds maximum depth of 1")),
], ids=["cross-namespace", "self", "missing", "another-object", "too-deep"])
def test_bad_references(ref, referenced, want):
    st = d.status(ds(source={"dataSource": ref}), pvc=f.pvc("base-img"), dv=None,
                  snapshot=None, now=T0, referenced=referenced)
    assert ready_of(st) == ("False", *want)
    assert st["source"] == {}


# --- timestamps and writes ----------------------------------------------------------

def test_unchanged_status_is_returned_unchanged():
    first = d.status(ds(), pvc=f.pvc("fedora-img"), dv=None, snapshot=None, now=T0)
    again = d.status(ds(status=first), pvc=f.pvc("fedora-img"), dv=None, snapshot=None,
                     now=T1)
    assert again == first


def test_transition_time_moves_only_with_the_status():
    importing = d.status(ds(), pvc=f.pvc("fedora-img"), dv=dv("ImportScheduled"),
                         snapshot=None, now=T0)
    progressed = d.status(ds(status=importing), pvc=f.pvc("fedora-img"),
                          dv=dv("ImportInProgress"), snapshot=None, now=T1)
    (c,) = progressed["conditions"]
    assert (c["reason"], c["lastTransitionTime"], c["lastHeartbeatTime"]) == (
        "ImportInProgress", T0, T1)
    done = d.status(ds(status=progressed), pvc=f.pvc("fedora-img"), dv=dv("Succeeded"),
                    snapshot=None, now=T1)
    (c,) = done["conditions"]
    assert (c["status"], c["lastTransitionTime"]) == ("True", T1)


def test_other_conditions_and_fields_are_kept_and_the_input_untouched():
    other = {"type": "Custom", "status": "True", "reason": "X", "message": ""}
    old = ds(status={"conditions": [other], "source": {"pvc": {"name": "stale"}},
                     "extra": 1})
    before = copy.deepcopy(old)
    st = d.status(old, pvc=None, dv=None, snapshot=None, now=T0)
    assert st["conditions"][0] == other and st["conditions"][1]["type"] == "Ready"
    assert st["extra"] == 1 and st["source"] == {}
    assert old == before


# --- ready ----------------------------------------------------------------------------

def test_ready_reads_the_condition():
    st = d.status(ds(), pvc=None, dv=None, snapshot=None, now=T0)
    assert d.ready(ds(status=st)) == (False, "NotFound", "PVC not found")
    st = d.status(ds(), pvc=f.pvc("fedora-img"), dv=None, snapshot=None, now=T0)
    assert d.ready(ds(status=st)) == (True, "Ready", "DataSource is ready to be consumed")


def test_a_datasource_never_reconciled_is_not_ready_and_says_so():
    assert d.ready(ds()) == (False, "NotReconciled",
                             "DataSource golden/fedora has not been reconciled yet")
    assert d.ready(ds(status={"conditions": ["junk"]}))[0] is False

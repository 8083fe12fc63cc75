"""CDI's storage.condition.bound annotations from a PVC's phase and its latest event."""

from __future__ import annotations

from controller import boundcondition, dvstatus
from controller.transfers.importing.transfer import PHASES
from tests.controller import factories as f

P = "cdi.kubevirt.io/storage.condition.bound"
WFFC = "waiting for first consumer to be created before binding"


def event(message, last=None, event_time=None):
    return {"message": message, "lastTimestamp": last, "eventTime": event_time}


def test_pending_pvc_gets_the_latest_event():
    pvc = f.pvc(phase="Pending")
    events = [event("old", "2026-01-01T00:00:00Z"), event(WFFC, "2026-01-01T00:00:05Z"),
              event("new style", None, "2026-01-01T00:00:03.500000Z")]
    assert boundcondition.patch(pvc, events) == {
        P: "false", P + ".reason": "Pending", P + ".message": WFFC}


def test_same_time_prefers_the_longer_message_whatever_the_order():
    a, b = event("short", "2026-01-01T00:00:00Z"), event("longer one", "2026-01-01T00:00:00Z")
    assert boundcondition.latest_message([a, b]) == boundcondition.latest_message([b, a])
    assert boundcondition.latest_message([a, b]) == "longer one"


def test_nothing_changes_without_events_or_when_already_written():
    pvc = f.pvc(phase="Pending")
    assert boundcondition.patch(pvc, []) == {}
    written = f.pvc(phase="Pending", annotations={P: "false", P + ".reason": "Pending",
                                                   P + ".message": WFFC})
    assert boundcondition.patch(written, [event(WFFC, "2026-01-01T00:00:00Z")]) == {}


def test_bound_pvc_loses_them():
    pvc = f.pvc(phase="Bound", annotations={P: "false", P + ".reason": "Pending",
                                             P + ".message": WFFC, "other": "x"})
    assert boundcondition.patch(pvc, []) == {P: None, P + ".reason": None,
                                             P + ".message": None}
    assert boundcondition.patch(f.pvc(phase="Bound"), []) == {}
    assert not boundcondition.needs_events(pvc)
    assert boundcondition.needs_events(f.pvc(phase="Pending"))


def test_selector_names_this_pvc_by_uid():
    assert boundcondition.event_selector(f.pvc()) == (
        "involvedObject.name=dv1,involvedObject.uid=pvc-uid")


def test_datavolume_bound_condition_reads_them_as_cdi():
    pvc = f.pvc(phase="Pending", annotations={P: "false", P + ".reason": "Pending",
                                               P + ".message": WFFC})
    obs = dvstatus.Observed(f.dv(), pvc, None, False, "2026-01-01T00:00:00Z", None, None,
                            None, PHASES)
    bound = next(c for c in dvstatus.compute(obs).status["conditions"]
                 if c["type"] == "Bound")
    assert bound["status"] == "False" and bound["reason"] == "Pending"
    assert bound["message"] == f"target PVC dv1 Pending and {WFFC}"

"""DataVolume garbage collection and the pending gauge, decided purely."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller import adoption, dvgc, pendingdvs
from tests.controller import factories as f

NOW = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
READY = {"phase": "Succeeded", "conditions": [
    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T12:00:00Z"}]}
MARKED = {dvgc.DELETE_AFTER_COMPLETION: "true"}


@pytest.mark.parametrize(("config", "ttl"), [
    (None, -1), ({"spec": {}}, -1), ({"spec": {"dataVolumeTTLSeconds": 0}}, 0),
    ({"spec": {"dataVolumeTTLSeconds": 30}}, 30), ({"spec": {"dataVolumeTTLSeconds": True}}, -1),
], ids=["no-config", "unset", "zero", "thirty", "not-an-int"])
def test_gc_is_off_unless_the_ttl_is_set(config, ttl):
    assert dvgc.ttl_seconds(config) == ttl


@pytest.mark.parametrize(("annotations", "status", "ttl", "mark"), [
    ({}, None, 0, True), ({}, None, -1, False),
    ({dvgc.DELETE_AFTER_COMPLETION: "false"}, None, 0, False),
    (MARKED, None, 0, False), ({}, {"phase": "Pending"}, 0, False),
], ids=["new", "gc-off", "opted-out", "already", "not-new"])
def test_new_datavolumes_are_marked_while_gc_is_on(annotations, status, ttl, mark):
    assert dvgc.needs_mark(f.dv(annotations=annotations, status=status), ttl) is mark


@pytest.mark.parametrize(("annotations", "status", "ttl", "due"), [
    (MARKED, READY, 0, -10.0), (MARKED, READY, 30, 20.0), (MARKED, READY, -1, None),
    ({}, READY, 0, None), ({dvgc.DELETE_AFTER_COMPLETION: "false"}, READY, 0, None),
    (MARKED, {"phase": "ImportInProgress"}, 0, None),
], ids=["ttl-0", "ttl-30", "off", "unmarked", "opted-out", "not-done"])
def test_only_marked_succeeded_datavolumes_are_collected_after_the_ttl(annotations, status,
                                                                      ttl, due):
    assert dvgc.due_in(f.dv(annotations=annotations, status=status), ttl, NOW) == due


def test_the_pvc_is_handed_to_the_datavolumes_owners():
    dv = f.dv()
    dv["metadata"]["ownerReferences"] = [{"kind": "VirtualMachine", "name": "vm",
                                         "uid": "vm-uid", "controller": True}]
    pvc = f.pvc(annotations={adoption.POPULATED_FOR: "dv1"})
    pvc["metadata"]["ownerReferences"] = [{"kind": "DataVolume", "name": "dv1",
                                          "uid": "dv-uid", "controller": True}]
    pvc["metadata"]["resourceVersion"] = "7"
    patch = dvgc.detach_patch(pvc, dv)["metadata"]
    assert [r["uid"] for r in patch["ownerReferences"]] == ["vm-uid"]
    assert patch["annotations"] == {dvgc.GARBAGE_COLLECTED: "true",
                                    adoption.POPULATED_FOR: None}
    assert patch["resourceVersion"] == "7"


@pytest.mark.parametrize(("dv", "waiting"), [
    (f.dv(), True),
    (f.dv(status={"phase": "Pending"}), True),
    (f.dv(status={"phase": "ImportScheduled"}), False),
    (f.dv(storage={"storageClassName": "local",
                   "resources": {"requests": {"storage": "1Gi"}}}), False),
    (f.dv(pvc={"resources": {"requests": {"storage": "1Gi"}}}), True),
    (f.dv(pvc={"storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}), False),
], ids=["unset", "pending", "scheduled", "named-class", "pvc-no-class", "pvc-empty-class"])
def test_pending_counts_datavolumes_waiting_for_a_default_class(dv, waiting):
    assert pendingdvs.waiting(dv) is waiting
    assert pendingdvs.count([dv, dv]) == (2 if waiting else 0)

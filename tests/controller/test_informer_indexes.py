"""The informer's UID and owner-label indexes follow adds, relabels and deletes."""

from controller.runtime import kube
from controller.runtime.informer import Informer

L = "cdi.kubevirt.io/owner-uid"


def obj(name, uid, owner=None, rv="1"):
    labels = {L: owner} if owner else {}
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": labels,
                         "resourceVersion": rv}}


def informer():
    return Informer(None, kube.PODS, lambda old, new: None, index_label=L)  # type: ignore[arg-type]


def test_objects_are_found_by_uid_and_by_owner_label():
    i = informer()
    i.upsert(obj("a", "u1", owner="dv"))
    i.upsert(obj("b", "u2", owner="dv"))
    i.upsert(obj("c", "u3"))
    assert i.by_uid("u3")["metadata"]["name"] == "c"
    assert [o["metadata"]["name"] for o in i.by_label("dv")] == ["a", "b"]


def test_relabel_and_delete_leave_no_stale_entries():
    i = informer()
    i.upsert(obj("a", "u1", owner="dv"))
    i.upsert(obj("a", "u1", owner="other", rv="2"))
    assert i.by_label("dv") == [] and len(i.by_label("other")) == 1
    i._apply({"type": "DELETED", "object": obj("a", "u1", owner="other", rv="3")})
    assert i.by_label("other") == [] and i.by_uid("u1") is None


def test_clone_targets_are_found_by_their_clone_request():
    i = Informer(None, kube.PVCS, lambda old, new: None,  # type: ignore[arg-type]
                 index_annotation="k8s.io/CloneRequest")
    a = obj("a", "u1")
    a["metadata"]["annotations"] = {"k8s.io/CloneRequest": "src-ns/src"}
    i.upsert(a)
    i.upsert(obj("b", "u2"))
    assert [o["metadata"]["name"] for o in i.by_annotation("src-ns/src")] == ["a"]
    i._apply({"type": "DELETED", "object": obj("a", "u1", rv="2")})
    assert i.by_annotation("src-ns/src") == []

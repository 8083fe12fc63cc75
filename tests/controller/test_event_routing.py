from controller.routing import CONFIG_KEY, keys_for


def obj(name, ns="ns", owner=None):
    meta = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": "u",
                                    "controller": True}]
    return {"metadata": meta}


def test_pvc_change_queues_itself_and_its_datavolume():
    assert keys_for("pvc", obj("d", owner=("DataVolume", "d"))) == [("pvc", "ns", "d"),
                                                                     ("dv", "ns", "d")]


def test_legacy_pvc_change_queues_only_itself():
    assert keys_for("pvc", obj("p")) == [("pvc", "ns", "p")]


def test_importer_pod_change_queues_its_pvc_and_datavolume():
    pod = obj("importer-d", owner=("PersistentVolumeClaim", "d"))
    assert keys_for("pod", pod) == [("pvc", "ns", "d"), ("dv", "ns", "d")]


def test_foreign_pod_queues_nothing():
    assert keys_for("pod", obj("x", owner=("ReplicaSet", "r"))) == []


def test_storage_class_change_queues_its_profile_and_the_config():
    assert keys_for("storageclass", obj("local", ns="")) == [("profile", "", "local"),
                                                              CONFIG_KEY]


def test_a_source_pvc_change_queues_the_clones_waiting_for_it():
    from controller.routing import Owners

    dv_target = obj("t1", ns="team", owner=("DataVolume", "t1"))
    legacy = obj("t2", ns="team")
    owners = Owners(clone_targets=lambda src: [dv_target, legacy] if src == "gold/img" else [])
    assert keys_for("pvc", obj("img", ns="gold"), owners) == [
        ("pvc", "gold", "img"), ("pvc", "team", "t1"), ("dv", "team", "t1"),
        ("pvc", "team", "t2")]


def test_a_source_pod_in_another_namespace_routes_to_its_target():
    from controller.routing import Owners

    target = obj("t2", ns="team")
    pod = obj("uid-source-pod", ns="gold")
    pod["metadata"]["labels"] = {"cdi.kubevirt.io/owner-uid": "t2-uid"}
    owners = Owners(pvc=lambda uid: target if uid == "t2-uid" else None)
    assert keys_for("pod", pod, owners) == [("pvc", "team", "t2")]

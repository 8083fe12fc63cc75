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

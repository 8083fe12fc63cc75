from controller import cdiconfig, profiles
from tests.controller import factories as f

SCS = [f.storage_class("local", default=True), f.storage_class("fast")]


def test_defaults_when_cdiconfig_is_empty_or_missing():
    for cfg in (None, {"spec": {}}):
        eff = cdiconfig.effective(cfg, SCS)
        st = eff.status()
        assert st["filesystemOverhead"] == {"global": "0.06",
                                            "storageClass": {"fast": "0.06", "local": "0.06"}}
        assert st["defaultPodResourceRequirements"]["requests"] == {"cpu": "100m",
                                                                    "memory": "60M"}
        assert st["scratchSpaceStorageClass"] == "local"


def test_spec_values_win_and_invalid_overheads_fall_back():
    eff = cdiconfig.effective({"spec": {
        "filesystemOverhead": {"global": "0.1", "storageClass": {"fast": "0", "bad": "7"}},
        "scratchSpaceStorageClass": "fast",
        "importProxy": {"HTTPSProxy": "http://p:3128", "trustedCAProxy": "proxy-ca"},
        "uploadProxyURLOverride": "https://upload.example",
    }}, SCS)
    assert eff.overhead_for("fast") == "0"
    assert eff.overhead_for("bad") == "0.1"
    assert eff.overhead_for("local") == "0.1"
    assert eff.overhead_for(None) == "0.1"
    st = eff.status()
    assert st["scratchSpaceStorageClass"] == "fast"
    assert st["importProxy"]["HTTPSProxy"] == "http://p:3128"
    assert st["uploadProxyURL"] == "https://upload.example"


def test_newest_default_class_wins():
    scs = [f.storage_class("old", default=True, created="2024-01-01T00:00:00Z"),
           f.storage_class("new", default=True, created="2024-06-01T00:00:00Z")]
    assert cdiconfig.default_class(scs) == "new"
    assert cdiconfig.default_class([f.storage_class("x")]) is None


def test_storage_profile_status_prefers_the_users_property_sets():
    sc = f.storage_class("local")
    mine = [{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}]
    st = profiles.status(sc, {"spec": {"claimPropertySets": mine, "cloneStrategy": "snapshot"}})
    assert st["claimPropertySets"] == mine
    assert st["cloneStrategy"] == "snapshot"
    default = profiles.status(sc, {"spec": {}})
    assert default["storageClass"] == "local"
    assert default["provisioner"] == "local.cdi-py"
    assert default["claimPropertySets"][0] == {"accessModes": ["ReadWriteOnce"],
                                               "volumeMode": "Filesystem"}


def test_pod_restart_limit_defaults_to_five_and_zero_means_none():
    assert cdiconfig.effective(None, SCS).pod_restart_limit == 5
    assert cdiconfig.effective(None, SCS).status()["podRestartLimit"] == 5
    for value, want in ((0, 0), (12, 12), (-1, 5), ("3", 5), (True, 5)):
        eff = cdiconfig.effective({"spec": {"podRestartLimit": value}}, SCS)
        assert eff.pod_restart_limit == want
        assert eff.status()["podRestartLimit"] == want

"""The clone strategy choice: what CDI's planner picks, and the reason when it falls back."""

from __future__ import annotations

import pytest

from cdicontract.clone import Strategy
from controller.transfers.clone import strategy as s
from tests.controller import factories as f

DRIVER = "csi.example.com"


def sc(name="fast", provisioner=DRIVER, expansion=False):
    return {"metadata": {"name": name}, "provisioner": provisioner,
            "allowVolumeExpansion": expansion}


def profile(status=None, spec=None, snapshot_class=None):
    st = {"cloneStrategy": status} if status else {}
    if snapshot_class:
        st["snapshotClass"] = snapshot_class
    return {"metadata": {"name": "fast"}, "spec": {"cloneStrategy": spec} if spec else {},
            "status": st}


def vsc(name, driver=DRIVER, default=False):
    ann = {"snapshot.storage.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": name, "annotations": ann}, "driver": driver,
            "deletionPolicy": "Delete"}


def source(mode="Filesystem", capacity="1Gi", klass="fast"):
    p = f.pvc("golden", mode=mode, size=capacity, sc=klass)
    p["status"]["capacity"] = {"storage": capacity}
    return p


def choose(**kw):
    args = {"source": source(), "target_class": sc(), "target_volume_mode": "Filesystem",
            "profile": profile("csi-clone"), "snapshot_classes": [vsc("snap")],
            "same_namespace": True, "csi_drivers": {DRIVER}}
    args.update(kw)
    return s.choose(**args)


def test_csi_clone_on_a_csi_class_with_everything_matching():
    assert choose() == s.Choice(Strategy.CSI_CLONE)


def test_snapshot_names_the_volume_snapshot_class():
    got = choose(profile=profile("snapshot"))
    assert got == s.Choice(Strategy.SNAPSHOT, snapshot_class="snap")


def test_copy_never_falls_back_and_carries_no_reason():
    got = choose(profile=profile("copy"), target_class=None, csi_drivers=(),
                 same_namespace=False, source=source(mode="Block"))
    assert got == s.Choice(Strategy.COPY)
    assert got.fallback_reason == "" and got.fallback_message == ""


@pytest.mark.parametrize(("prof", "override", "want"), [
    (None, "", "snapshot"),
    (profile(), "", "snapshot"),
    (profile("csi-clone"), "", "csi-clone"),
    (profile("csi-clone", spec="copy"), "", "copy"),
    (profile(spec="snapshot"), "", "snapshot"),
    (profile("csi-clone"), "copy", "copy"),
], ids=["no-profile-default-snapshot", "empty-profile", "status", "spec-over-status",
        "spec-only", "global-override"])
def test_wanted_strategy(prof, override, want):
    assert s.wanted(prof, override) == want


def test_no_profile_wants_snapshot_and_uses_the_driver_s_class():
    assert choose(profile=None) == s.Choice(Strategy.SNAPSHOT, snapshot_class="snap")


def test_global_override_wins_over_the_profile():
    assert choose(override="copy") == s.Choice(Strategy.COPY)


FALLBACKS = [
    ("non-csi-class", dict(csi_drivers=()), s.NO_POPULATOR, s.MESSAGE_NO_POPULATOR),
    ("no-target-class", dict(target_class=None), s.NO_POPULATOR, s.MESSAGE_NO_POPULATOR),
    ("other-provisioner", dict(source=source(klass="slow"), source_class=sc("slow", "other")),
     s.INCOMPATIBLE_PROVISIONERS, s.MESSAGE_INCOMPATIBLE_PROVISIONERS),
    ("other-class-unknown", dict(source=source(klass="slow")),
     s.INCOMPATIBLE_PROVISIONERS, s.MESSAGE_INCOMPATIBLE_PROVISIONERS),
    ("fs-to-block", dict(target_volume_mode="Block"),
     s.INCOMPATIBLE_VOLUME_MODES, s.MESSAGE_INCOMPATIBLE_VOLUME_MODES),
    ("block-to-fs", dict(source=source(mode="Block"), target_volume_mode=""),
     s.INCOMPATIBLE_VOLUME_MODES, s.MESSAGE_INCOMPATIBLE_VOLUME_MODES),
    ("larger-target-no-expansion", dict(target_size="2Gi"),
     s.NO_VOLUME_EXPANSION, s.MESSAGE_NO_VOLUME_EXPANSION),
    ("cross-namespace", dict(same_namespace=False),
     s.CROSS_NAMESPACE_SMART_CLONE, s.MESSAGE_CROSS_NAMESPACE_SMART_CLONE),
]


@pytest.mark.parametrize("wanted", ["csi-clone", "snapshot"])
@pytest.mark.parametrize(("case", "kw", "reason", "message"), FALLBACKS,
                         ids=[c[0] for c in FALLBACKS])
def test_smart_strategies_fall_back_to_copy_with_cdis_reason(wanted, case, kw, reason, message):
    if case == "other-provisioner" and wanted == "snapshot":
        reason, message = s.NO_VOLUME_SNAPSHOT_CLASS, s.MESSAGE_NO_VOLUME_SNAPSHOT_CLASS
    if case == "other-class-unknown" and wanted == "snapshot":
        reason, message = s.NO_VOLUME_SNAPSHOT_CLASS, s.MESSAGE_NO_VOLUME_SNAPSHOT_CLASS
    got = choose(profile=profile(wanted), **kw)
    assert got == s.Choice(Strategy.COPY, reason, message)


def test_fallback_message_is_cdis_text():
    assert choose(csi_drivers=()).fallback_message == \
        "In tree storage class does not support snapshot/clone"
    assert choose(profile=profile("snapshot"), snapshot_classes=[]).fallback_message == \
        "No compatible volumesnapshotclass found"


def test_the_first_failing_rule_names_the_fallback_in_cdis_order():
    # Volume modes differ and the namespace differs: CDI's rule comes first.
    got = choose(target_volume_mode="Block", same_namespace=False)
    assert got.fallback_reason == s.INCOMPATIBLE_VOLUME_MODES
    # No snapshot class and volume modes differ: the snapshot class is checked first.
    got = choose(profile=profile("snapshot"), snapshot_classes=[], target_volume_mode="Block")
    assert got.fallback_reason == s.NO_VOLUME_SNAPSHOT_CLASS


def test_a_different_class_on_the_same_driver_is_compatible():
    got = choose(source=source(klass="fast-retain"), source_class=sc("fast-retain"))
    assert got == s.Choice(Strategy.CSI_CLONE)


def test_larger_target_is_fine_where_the_class_expands():
    assert choose(target_size="2Gi", target_class=sc(expansion=True)).strategy \
        is Strategy.CSI_CLONE


@pytest.mark.parametrize("size", ["1Gi", "1073741824", 1073741824, "512Mi", None])
def test_target_not_larger_than_the_source_needs_no_expansion(size):
    assert choose(target_size=size).strategy is Strategy.CSI_CLONE


def test_unbound_source_is_sized_by_its_request():
    src = source(capacity="1Gi")
    del src["status"]["capacity"]
    assert choose(source=src, target_size="2Gi").fallback_reason == s.NO_VOLUME_EXPANSION


@pytest.mark.parametrize(("classes", "prof", "want"), [
    ([vsc("b"), vsc("a")], profile("snapshot"), "a"),
    ([vsc("a"), vsc("b", default=True)], profile("snapshot"), "b"),
    ([vsc("a"), vsc("b", default=True)], profile("snapshot", snapshot_class="a"), "a"),
    ([vsc("a", driver="other"), vsc("b")], profile("snapshot"), "b"),
], ids=["first-by-name", "default-annotated", "profile-names-one", "driver-must-match"])
def test_snapshot_class_choice(classes, prof, want):
    assert choose(profile=prof, snapshot_classes=classes).snapshot_class == want


@pytest.mark.parametrize(("classes", "prof"), [
    ([vsc("a", driver="other")], profile("snapshot")),
    ([vsc("a"), vsc("b", driver="other")], profile("snapshot", snapshot_class="b")),
    ([vsc("a")], profile("snapshot", snapshot_class="missing")),
], ids=["no-class-of-the-driver", "profile-class-other-driver", "profile-class-missing"])
def test_no_compatible_snapshot_class_falls_back(classes, prof):
    got = choose(profile=prof, snapshot_classes=classes)
    assert (got.strategy, got.fallback_reason) == (Strategy.COPY, s.NO_VOLUME_SNAPSHOT_CLASS)


@pytest.mark.parametrize("name", ["Copy", "host-assisted", "x" * 300])
def test_unknown_strategy_falls_back_without_echoing_long_input(name):
    got = choose(profile=profile(name))
    assert (got.strategy, got.fallback_reason) == (Strategy.COPY, s.UNKNOWN_CLONE_STRATEGY)
    assert len(got.fallback_message) < 150


# --- from a VolumeSnapshot -------------------------------------------------------------

def snap(restore="1Gi", ann=None):
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "golden-snap", "namespace": "ns", "annotations": ann or {}},
            "spec": {"source": {"persistentVolumeClaimName": "golden"}},
            "status": {"readyToUse": True, "restoreSize": restore,
                       "boundVolumeSnapshotContentName": "snapcontent-1"}}


def content(driver=DRIVER, mode="Filesystem"):
    spec = {"driver": driver, "deletionPolicy": "Delete",
            "source": {"snapshotHandle": "h"}, "volumeSnapshotRef": {"name": "golden-snap"}}
    if mode:
        spec["sourceVolumeMode"] = mode
    return {"metadata": {"name": "snapcontent-1"}, "spec": spec}


def test_snapshot_source_restores_whatever_the_profile_wants():
    got = choose(source=snap(), snapshot_content=content(), profile=profile("copy"))
    assert got == s.Choice(Strategy.SNAPSHOT)


@pytest.mark.parametrize(("kw", "reason"), [
    (dict(snapshot_content=content(driver="other")), s.NO_PROVISIONER_MATCH),
    (dict(snapshot_content=None), s.NO_PROVISIONER_MATCH),
    (dict(snapshot_content=content(), target_size="2Gi"), s.NO_VOLUME_EXPANSION),
    (dict(snapshot_content=content(mode="Block")), s.INCOMPATIBLE_VOLUME_MODES),
    (dict(snapshot_content=content(), csi_drivers=()), s.NO_POPULATOR),
    (dict(snapshot_content=content(), same_namespace=False), s.CROSS_NAMESPACE_SMART_CLONE),
], ids=["driver-differs", "content-unknown", "no-expansion", "modes-differ", "non-csi",
        "cross-namespace"])
def test_snapshot_source_fallbacks(kw, reason):
    got = choose(source=snap(), **kw)
    assert (got.strategy, got.fallback_reason) == (Strategy.COPY, reason)


def test_snapshot_source_mode_from_the_annotation_when_the_content_has_none():
    src = snap(ann={s.SOURCE_VOLUME_MODE_ANNOTATION: "Block"})
    got = choose(source=src, snapshot_content=content(mode=None))
    assert got.fallback_reason == s.INCOMPATIBLE_VOLUME_MODES
    assert choose(source=src, snapshot_content=content(mode=None),
                  target_volume_mode="Block").strategy is Strategy.SNAPSHOT


# --- what a StorageProfile advertises -------------------------------------------------

@pytest.mark.parametrize(("klass", "prof", "classes", "want"), [
    (sc(), None, [], ("copy", "")),
    (sc(), None, [vsc("snap")], ("snapshot", "snap")),
    (sc(), profile(spec="csi-clone"), [vsc("snap")], ("csi-clone", "snap")),
    ({**sc(), "metadata": {"name": "fast", "annotations": {
        "cdi.kubevirt.io/clone-strategy": "csi-clone"}}}, None, [], ("csi-clone", "")),
    (sc(provisioner="rbd.csi.ceph.com"), None, [], ("csi-clone", "")),
    (sc(provisioner="csi-powerstore.dellemc.com"), None,
     [vsc("p", driver="csi-powerstore.dellemc.com")], ("copy", "p")),
    (sc(provisioner="vpc.file.csi.ibm.io"), None, [], ("copy", "")),
    (sc(), {"spec": {"snapshotClass": "b"}}, [vsc("a", default=True), vsc("b")],
     ("snapshot", "b")),
    (sc(provisioner="local.cdi-py.io/loop"), None, [vsc("snap")], ("copy", "")),
], ids=["no-snapshot-class", "snapshot-class", "spec", "class-annotation", "advised-csi-clone",
        "advised-copy", "advised-snapshot-without-class", "profile-snapshot-class",
        "class-of-another-driver"])
def test_advised_profile_strategy(klass, prof, classes, want):
    assert s.advised(klass, prof, classes) == want

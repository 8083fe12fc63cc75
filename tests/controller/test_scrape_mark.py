"""The controller's mark on a PVC names the one pod it made; a tenant can forge none."""

from __future__ import annotations

from controller import clonekey, scrapemark

KEY = scrapemark.key_from(clonekey.generate())
OTHER_KEY = scrapemark.key_from(clonekey.generate())


def _pvc(uid: str, annotations: dict[str, str] | None = None) -> dict:
    return {"metadata": {"name": "disk", "namespace": "t", "uid": uid,
                         "annotations": annotations or {}}}


def _pod(uid: str) -> dict:
    return {"metadata": {"name": "importer-disk", "namespace": "t", "uid": uid,
                         "labels": {"app": "containerized-data-importer"}}}


def test_the_pod_the_controller_made_verifies():
    pvc, pod = _pvc("pvc-1"), _pod("pod-1")
    marked = _pvc("pvc-1", scrapemark.mark(KEY, pvc, pod))
    assert scrapemark.made_by_controller(KEY, marked, pod)


def test_a_tenants_pod_of_the_same_name_and_labels_does_not():
    pvc = _pvc("pvc-1")
    marked = _pvc("pvc-1", scrapemark.mark(KEY, pvc, _pod("pod-1")))
    assert not scrapemark.made_by_controller(KEY, marked, _pod("pod-2"))


def test_a_tenant_who_writes_their_pods_uid_into_the_mark_fails():
    mark = scrapemark.mark(KEY, _pvc("pvc-1"), _pod("pod-1"))[scrapemark.POD_MARK]
    forged = "pod-2." + mark.partition(".")[2]
    pvc = _pvc("pvc-1", {scrapemark.POD_MARK: forged})
    assert not scrapemark.made_by_controller(KEY, pvc, _pod("pod-2"))
    own_key = scrapemark.mark(OTHER_KEY, _pvc("pvc-1"), _pod("pod-2"))
    assert not scrapemark.made_by_controller(KEY, _pvc("pvc-1", own_key), _pod("pod-2"))


def test_a_mark_copied_from_another_pvc_names_that_pvc():
    mark = scrapemark.mark(KEY, _pvc("pvc-1"), _pod("pod-1"))
    assert not scrapemark.made_by_controller(KEY, _pvc("pvc-2", mark), _pod("pod-1"))


def test_nothing_verifies_without_a_key_or_a_mark():
    pvc, pod = _pvc("pvc-1"), _pod("pod-1")
    assert not scrapemark.made_by_controller(None, _pvc("pvc-1", scrapemark.mark(KEY, pvc, pod)),
                                             pod)
    assert not scrapemark.made_by_controller(KEY, pvc, pod)
    assert not scrapemark.made_by_controller(KEY, _pvc("pvc-1", {scrapemark.POD_MARK: ""}),
                                             _pod(""))

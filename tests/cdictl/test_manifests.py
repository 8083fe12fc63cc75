"""The DataVolume and PVC cdictl creates: virtctl's shapes, field by field."""

from __future__ import annotations

import pytest

from cdictl import manifests, options


def opts(*extra: str, kind: str = "dv") -> options.UploadOptions:
    return options.parse([kind, "disk", "--image-path", "/img", *extra])


def test_the_datavolume_uses_the_storage_api_and_only_what_was_asked() -> None:
    assert manifests.datavolume(opts("--size", "10Gi"), "ns") == {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "disk", "namespace": "ns"},
        "spec": {
            "source": {"upload": {}},
            "contentType": "kubevirt",
            "storage": {"resources": {"requests": {"storage": "10Gi"}}},
        },
    }


def test_every_datavolume_option() -> None:
    dv = manifests.datavolume(
        opts("--size", "1G", "--storage-class", "fast", "--access-mode", "ReadWriteMany",
             "--volume-mode", "block", "--force-bind"), "ns")
    assert dv["metadata"]["annotations"] == {
        "cdi.kubevirt.io/storage.bind.immediate.requested": ""}
    assert dv["spec"]["storage"] == {
        "resources": {"requests": {"storage": "1G"}}, "storageClassName": "fast",
        "accessModes": ["ReadWriteMany"], "volumeMode": "Block"}


def test_an_archive_is_content_type_archive() -> None:
    o = options.parse(["dv", "a", "--archive-path", "/a.tar", "--size", "1Gi"])
    assert manifests.datavolume(o, "ns")["spec"]["contentType"] == "archive"
    assert manifests.pvc(o, "ns")["metadata"]["annotations"][
        "cdi.kubevirt.io/storage.contentType"] == "archive"


def test_the_pvc_is_an_upload_target_with_virtctls_defaults() -> None:
    assert manifests.pvc(opts("--size", "5Gi", kind="pvc"), "ns") == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "disk", "namespace": "ns",
            "annotations": {"cdi.kubevirt.io/storage.upload.target": "",
                            "cdi.kubevirt.io/storage.contentType": "kubevirt"},
            "labels": {"cdi.kubevirt.io/applyStorageProfile": "true"},
        },
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "5Gi"}}},
    }


def test_every_pvc_option() -> None:
    pvc = manifests.pvc(opts("--size", "5Gi", "--storage-class", "s", "--volume-mode",
                             "filesystem", "--access-mode", "ReadWriteMany", "--force-bind",
                             kind="pvc"), "ns")
    assert pvc["spec"]["storageClassName"] == "s"
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"][
        "cdi.kubevirt.io/storage.bind.immediate.requested"] == ""


@pytest.mark.parametrize(("size", "message"), [
    (None, "when creating a resource, the size must be specified"),
    ("ten gigs", "validation failed for size=ten gigs: quantities must match the regular "
                 "expression"),
    ("10GB", "validation failed for size=10GB: quantities must match the regular "
             "expression"),
    ("10Qi", "validation failed for size=10Qi: quantities must match"),
    ("1.5.5Gi", "validation failed for size=1.5.5Gi: quantities must match"),
])
def test_a_missing_or_bad_size_is_refused(size: str | None, message: str) -> None:
    o = opts(*(["--size", size] if size else []))
    for build in (manifests.datavolume, manifests.pvc):
        with pytest.raises(manifests.ManifestError, match=message):
            build(o, "ns")


def test_a_read_only_volume_is_not_created() -> None:
    o = opts("--size", "1Gi", "--access-mode", "ReadOnlyMany")
    for build in (manifests.datavolume, manifests.pvc):
        with pytest.raises(manifests.ManifestError, match="cannot upload to a readonly "
                           "volume, use either ReadWriteOnce or ReadWriteMany if supported"):
            build(o, "ns")


def test_the_token_request_names_the_pvc() -> None:
    assert manifests.token_request("disk") == {
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"name": "token-for-cdictl"}, "spec": {"pvcName": "disk"}}

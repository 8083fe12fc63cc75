"""Every pod the controller creates runs the release image of its component as uid 107,
with a read-only root file system and /tmp as its one writable place outside the volumes."""

from __future__ import annotations

import pytest

from cdicontract import clone, images
from controller.cdiconfig import EffectiveConfig
from controller.transfers.clone import objects as cloneobjects
from controller.transfers.importing import pod as importpod
from controller.transfers.importing.source import ImportRequest, SourceKind
from controller.transfers.upload import objects as uploadobjects
from tests.controller import factories as f

CONFIG = EffectiveConfig()


def _clone_target():
    p = f.pvc("tgt", annotations={clone.CLONE_REQUEST_ANNOTATION: "ns/src"})
    p["metadata"]["uid"] = "tgt-uid"
    return p


def _pods():
    http = ImportRequest(SourceKind.HTTP, "http://h/disk.qcow2")
    importer = importpod.PodSettings(images.default_image("importer"))
    yield "import filesystem", importpod.build(f.pvc(), http, CONFIG, importer)
    yield "import block", importpod.build(f.pvc(mode="Block"), http, CONFIG, importer)
    yield "upload server", uploadobjects.pod(f.pvc(), CONFIG, uploadobjects.PodSettings())
    yield "clone target server", cloneobjects.server_pod(
        _clone_target(), CONFIG, uploadobjects.PodSettings())
    yield "clone source", cloneobjects.source_pod(
        _clone_target(), f.pvc("src"), CONFIG, cloneobjects.SourcePodSettings())
    yield "clone source block", cloneobjects.source_pod(
        _clone_target(), f.pvc("src", mode="Block"), CONFIG, cloneobjects.SourcePodSettings())


PODS = list(_pods())


@pytest.mark.parametrize("pod", [p for _, p in PODS], ids=[n for n, _ in PODS])
def test_root_is_read_only_and_tmp_is_an_empty_dir(pod):
    (c,) = pod["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsUser"] == 107
    assert pod["spec"]["securityContext"]["runAsUser"] == 107
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and not tmp[0].get("readOnly")
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == tmp[0]["name"])
    if pod["metadata"]["name"].startswith("importer-"):
        # Only small files: an import's copy goes to a scratch PVC, never to the node.
        assert volume == {"name": tmp[0]["name"], "emptyDir": {"sizeLimit": "64Mi"}}
    else:
        # Disk-backed and unbounded: an upload to a block target may still copy there.
        assert volume == {"name": tmp[0]["name"], "emptyDir": {}}


@pytest.mark.parametrize(("settings", "component"), [
    (uploadobjects.PodSettings(), "uploadserver"),
    (cloneobjects.SourcePodSettings(), "cloner"),
], ids=["uploadserver", "cloner"])
def test_default_images_are_this_versions_release_images(settings, component):
    assert settings.image == f"quay.io/cdi-py/{component}:{images.version()}"


def test_the_built_pods_carry_the_configured_images():
    names = {n: p["spec"]["containers"][0]["image"] for n, p in PODS}
    assert names["import filesystem"] == images.default_image("importer")
    assert names["upload server"] == names["clone target server"] == images.default_image(
        "uploadserver")
    assert names["clone source"] == images.default_image("cloner")



def test_cdiconfig_pull_secrets_reach_every_transfer_pod_and_the_status():
    from controller.cdiconfig import effective

    config = effective({"spec": {"imagePullSecrets": [{"name": "regcred"}, {"name": "b"},
                                                      {}]}}, [])
    assert config.image_pull_secrets == ("regcred", "b")
    assert config.status()["imagePullSecrets"] == [{"name": "regcred"}, {"name": "b"}]
    http = ImportRequest(SourceKind.HTTP, "http://h/disk.qcow2")
    pods = [
        importpod.build(f.pvc(), http, config, importpod.PodSettings("i")),
        uploadobjects.pod(f.pvc(), config, uploadobjects.PodSettings()),
        cloneobjects.server_pod(_clone_target(), config, uploadobjects.PodSettings()),
        cloneobjects.source_pod(_clone_target(), f.pvc("src"), config,
                                cloneobjects.SourcePodSettings()),
    ]
    for pod in pods:
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "b"}]


@pytest.mark.parametrize("pod", [p for _, p in PODS], ids=[n for n, _ in PODS])
def test_no_pull_secrets_by_default(pod):
    assert "imagePullSecrets" not in pod["spec"]
    assert "imagePullSecrets" not in EffectiveConfig().status()

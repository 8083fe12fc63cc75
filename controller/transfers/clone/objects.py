"""A host-assisted clone's objects: pure builders.

In the target namespace, the upload server's pod, Service and serving Secret as for an
upload (same names, `cdi-upload-<pvc>`), labelled as a clone and in clone mode: the
server accepts only the client named `clone.client_name(<target pvc uid>)`. In the
source namespace, that client: the Secret with its certificate (issued by the upload
servers' client CA) and the cloner pod, which mounts the source PVC read-only and
streams it to the target's Service. The source namespace's objects carry no owner
reference (none can cross namespaces); the owner-UID and transfer labels route their
events back to the target, and the target PVC's finalizer removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdicontract import annotations as ann
from cdicontract import clone, images, upload
from cdicontract import envvars as env
from cdicontract import importpod as ip
from controller import certs, claims, propagation
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers import podspec, protocol
from controller.transfers.upload import objects as uploadobjects
from controller.transfers.upload.authority import Authority, tls_secret

KIND = protocol.Kind.CLONE
SOURCE_COMPONENT = "cdi-clone-source"
CONTAINER_NAME = "cdi-clone-source"
SOURCE_VOLUME = "cdi-clone-source"
TLS_VOLUME = "tls"
FINALIZER = "cdi.kubevirt.io/cloneSource"
"""CDI's finalizer on a target PVC while its source pod may exist."""
CLONE_SOURCE_POD_ANNOTATION = "cdi.kubevirt.io/storage.sourceClonePodName"
"""CDI's AnnCloneSourcePod: the source pod's name, recorded on the target PVC."""
SOURCE_RUNNING = "cdi.kubevirt.io/storage.condition.source.running"
"""CDI's AnnSourceRunningCondition (+ `.reason`, `.message`) on the target PVC: here set
while the source pod cannot pull its image, and reset once it can."""
SOURCE_RUNNING_REASON = SOURCE_RUNNING + ".reason"
SOURCE_RUNNING_MESSAGE = SOURCE_RUNNING + ".message"


@dataclass(frozen=True)
class SourcePodSettings:
    image: str = field(default_factory=lambda: images.default_image("cloner"))
    pull_policy: str = "IfNotPresent"


def upload_url(target: Obj) -> str:
    service = upload.upload_service_name(o.name(target))
    return f"https://{service}.{o.namespace(target)}.svc:443{clone.CLONE_PATH}"


def server_pod(target: Obj, config: EffectiveConfig,
               settings: uploadobjects.PodSettings) -> Obj:
    return uploadobjects.pod(
        target, config, settings, kind=KIND, client_name=clone.client_name(o.uid(target)),
        extra_env=({"name": clone.ENV_SERVER_MODE, "value": clone.SERVER_MODE_CLONE},))


def server_service(target: Obj) -> Obj:
    return uploadobjects.service(target, KIND)


def server_secret(target: Obj, authority: Authority) -> Obj:
    return uploadobjects.secret(target, authority, KIND)


def source_labels(target: Obj, source: Obj) -> dict[str, str]:
    return {
        ann.LABEL_APP: ann.LABEL_APP_VALUE,
        ann.LABEL_COMPONENT: SOURCE_COMPONENT,
        ann.LABEL_PROMETHEUS: "true",
        clone.SOURCE_PVC_LABEL: o.name(source),
        **protocol.owner_labels(target, KIND),
    }


def client_secret(target: Obj, source: Obj, authority: Authority) -> Obj:
    """The cloner's client certificate (CN `client_name(target uid)`), and the CA that
    signed the target server's certificate."""
    uid = o.uid(target)
    leaf = certs.issue(authority.client_ca, clone.client_name(uid), client=True)
    return tls_secret(clone.client_secret_name(uid), o.namespace(source), leaf,
                      ca_pem=authority.server_ca.cert_pem,
                      labels={clone.SOURCE_PVC_LABEL: o.name(source),
                              **protocol.owner_labels(target, KIND)})


def source_pod(target: Obj, source: Obj, config: EffectiveConfig,
               settings: SourcePodSettings) -> Obj:
    uid = o.uid(target)
    block = claims.volume_mode(source) == claims.BLOCK
    container: Obj = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "env": [
            {"name": clone.ENV_UPLOAD_URL, "value": upload_url(target)},
            {"name": clone.ENV_CONTENT_TYPE, "value": uploadobjects.content_type(target)},
            {"name": clone.ENV_VOLUME_MODE, "value": claims.volume_mode(source)},
            {"name": clone.ENV_TLS_DIR, "value": clone.TLS_DIR},
            {"name": clone.ENV_OWNER_UID, "value": uid},
            {"name": clone.ENV_TERMINATION_LOG, "value": env.DEFAULT_TERMINATION_LOG},
        ],
        **podspec.container_common(config),
        "volumeMounts": [{"name": TLS_VOLUME, "mountPath": clone.TLS_DIR, "readOnly": True},
                         podspec.tmp_mount()],
    }
    if block:
        container["volumeDevices"] = [{"name": SOURCE_VOLUME,
                                       "devicePath": env.DEFAULT_BLOCK_DEST}]
    else:
        container["volumeMounts"].insert(0, {"name": SOURCE_VOLUME,
                                             "mountPath": env.DEFAULT_DATA_DIR,
                                             "readOnly": True})
    spec: Obj = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": [
            {"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": o.name(source),
                                                              "readOnly": True}},
            {"name": TLS_VOLUME, "secret": {"secretName": clone.client_secret_name(uid),
                                            "defaultMode": 0o440}},
            podspec.tmp_volume(),
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ip.IMPORTER_UID,
            "fsGroup": ip.IMPORTER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        **podspec.pod_common(config),
    }
    priority = propagation.priority_class(target)
    if priority:
        spec["priorityClassName"] = priority
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": clone.source_pod_name(uid), "namespace": o.namespace(source),
                     "labels": source_labels(target, source),
                     "annotations": {**propagation.pod_annotations(target),
                                     ann.CREATED_BY_CONTROLLER: "yes"}},
        "spec": spec,
    }

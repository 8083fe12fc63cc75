"""The upload server's pod, Service and TLS Secret for a PVC: pure builders.

As CDI's upload controller makes them: pod and Service `cdi-upload-<pvc>` (shortened when
too long), owned by the PVC, in its namespace; the Service maps 443 to the server's
8443; the pod runs non-root with every capability dropped, mounts the PVC as the importer
pod does, and is Ready only when its HTTPS /healthz answers, which is what the proxy
waits for. The Secret, named like the pod, holds the serving certificate for the
Service's DNS names and the CA the proxy's client certificate must chain to.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from cdicontract import annotations as ann
from cdicontract import envvars as env
from cdicontract import images, upload
from cdicontract import importpod as ip
from controller import certs, claims, propagation
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers import podspec, protocol
from controller.transfers.upload.authority import Authority, tls_secret

CONTAINER_NAME = "cdi-upload-server"
COMPONENT = "cdi-upload-server"
TLS_VOLUME = "tls"
SERVICE_PORT = 443


@dataclass(frozen=True)
class PodSettings:
    image: str = field(default_factory=lambda: images.default_image("uploadserver"))
    pull_policy: str = "IfNotPresent"


UPLOAD = protocol.Kind.UPLOAD


def labels(pvc: Obj, kind: protocol.Kind = UPLOAD) -> dict[str, str]:
    return {
        ann.LABEL_APP: ann.LABEL_APP_VALUE,
        ann.LABEL_COMPONENT: COMPONENT,
        ann.LABEL_PROMETHEUS: "true",
        **protocol.owner_labels(pvc, kind),
    }


def selector(pvc: Obj, kind: protocol.Kind = UPLOAD) -> dict[str, str]:
    """What the Service selects: exactly this PVC's upload server pod."""
    return protocol.owner_labels(pvc, kind)


def _metadata(name: str, pvc: Obj, kind: protocol.Kind = UPLOAD) -> Obj:
    return {"name": name, "namespace": o.namespace(pvc), "labels": labels(pvc, kind),
            "annotations": {ann.CREATED_BY_CONTROLLER: "yes"},
            "ownerReferences": [o.owner_ref(pvc)]}


def _dest(pvc: Obj, content_type: str) -> str:
    if claims.volume_mode(pvc) == claims.BLOCK:
        return env.DEFAULT_BLOCK_DEST
    return env.DEFAULT_DATA_DIR if content_type == "archive" else env.DEFAULT_FILE_DEST


def content_type(pvc: Obj) -> str:
    return o.annotations(pvc).get(ann.CONTENT_TYPE) or "kubevirt"


def _env(pvc: Obj, config: EffectiveConfig, client_name: str) -> list[Obj]:
    block = claims.volume_mode(pvc) == claims.BLOCK
    cls = o.get_path(pvc, "spec", "storageClassName")
    requested = o.annotations(pvc).get(ann.PREALLOCATION_REQUESTED)
    prealloc = config.preallocation if requested is None else requested == "true"
    ctype = content_type(pvc)
    return [
        {"name": upload.ENV_TLS_DIR, "value": upload.TLS_DIR},
        {"name": upload.ENV_CLIENT_NAME, "value": client_name},
        {"name": upload.ENV_DEST, "value": _dest(pvc, ctype)},
        {"name": upload.ENV_CONTENT_TYPE, "value": ctype},
        {"name": upload.ENV_IMAGE_SIZE, "value": claims.requested_size(pvc)},
        {"name": upload.ENV_FILESYSTEM_OVERHEAD,
         "value": "0" if block else config.overhead_for(cls)},
        {"name": upload.ENV_PREALLOCATION, "value": "true" if prealloc else "false"},
        {"name": upload.ENV_OWNER_UID, "value": o.uid(pvc)},
        {"name": upload.ENV_TERMINATION_LOG, "value": env.DEFAULT_TERMINATION_LOG},
    ]


def pod(pvc: Obj, config: EffectiveConfig, settings: PodSettings, *,
        kind: protocol.Kind = UPLOAD, client_name: str = upload.CLIENT_COMMON_NAME,
        extra_env: tuple[Obj, ...] = ()) -> Obj:
    """The upload server pod; a clone target's server differs by `kind` (its labels),
    the one client it accepts and its mode (`extra_env`)."""
    name = upload.upload_resource_name(o.name(pvc))
    block = claims.volume_mode(pvc) == claims.BLOCK
    data: Obj = {"name": ip.DATA_VOLUME_NAME}
    container: Obj = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "env": [*_env(pvc, config, client_name), *copy.deepcopy(list(extra_env))],
        "ports": [
            {"name": "uploadserver", "containerPort": upload.UPLOAD_SERVER_PORT,
             "protocol": "TCP"},
            {"name": "metrics", "containerPort": upload.UPLOAD_SERVER_METRICS_PORT,
             "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": upload.UPLOAD_SERVER_PORT,
                        "scheme": "HTTPS"},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
        },
        **podspec.container_common(config),
        "volumeMounts": [{"name": TLS_VOLUME, "mountPath": upload.TLS_DIR, "readOnly": True},
                         podspec.tmp_mount()],
    }
    if block:
        container["volumeDevices"] = [{**data, "devicePath": env.DEFAULT_BLOCK_DEST}]
    else:
        container["volumeMounts"].insert(0, {**data, "mountPath": env.DEFAULT_DATA_DIR})
    spec: Obj = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": [
            {"name": ip.DATA_VOLUME_NAME, "persistentVolumeClaim": {"claimName": o.name(pvc)}},
            {"name": TLS_VOLUME, "secret": {"secretName": name, "defaultMode": 0o440}},
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
    priority = propagation.priority_class(pvc)
    if priority:
        spec["priorityClassName"] = priority
    metadata = _metadata(name, pvc, kind)
    metadata["annotations"] = {**propagation.pod_annotations(pvc), **metadata["annotations"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def service(pvc: Obj, kind: protocol.Kind = UPLOAD) -> Obj:
    name = upload.upload_service_name(o.name(pvc))
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _metadata(name, pvc, kind),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(pvc, kind),
            "ports": [{"name": "uploadserver", "protocol": "TCP", "port": SERVICE_PORT,
                       "targetPort": upload.UPLOAD_SERVER_PORT}],
        },
    }


def server_names(pvc: Obj) -> list[str]:
    return certs.dns_names(upload.upload_service_name(o.name(pvc)), o.namespace(pvc))


def secret(pvc: Obj, authority: Authority, kind: protocol.Kind = UPLOAD) -> Obj:
    """The pod's TLS Secret: a fresh serving certificate signed by the server CA."""
    names = server_names(pvc)
    leaf = certs.issue(authority.server_ca, names[2], dns=names)
    body = tls_secret(upload.upload_resource_name(o.name(pvc)), o.namespace(pvc), leaf,
                      ca_pem=authority.client_ca.cert_pem,
                      labels=protocol.owner_labels(pvc, kind))
    body["metadata"]["ownerReferences"] = [o.owner_ref(pvc)]
    return body

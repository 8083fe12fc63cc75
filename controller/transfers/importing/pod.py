"""The importer pod for a PVC, as CDI builds it: a pure function of the PVC and the config.

Name `importer-<pvc>`, owned by the PVC (deleting the PVC stops the import), restartPolicy
OnFailure (transient failures retry in place, restartCount grows), non-root with every
capability dropped, the target at /data/disk.img or /dev/cdi-block-volume, the CA bundle at
/certs, credentials only through secretKeyRef (never copied into the pod spec).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdicontract import annotations as ann
from cdicontract import envvars as env
from cdicontract import importpod as ip
from cdicontract import scratch as cdiscratch
from controller import claims, propagation
from controller.cdiconfig import EffectiveConfig
from controller.runtime import objects as o
from controller.runtime.objects import Obj
from controller.transfers import podspec, protocol
from controller.transfers.importing import proxycert, proxysecret, scratch
from controller.transfers.importing.source import ImportRequest, SourceKind


@dataclass(frozen=True)
class PodSettings:
    image: str
    pull_policy: str = "IfNotPresent"
    cdi_namespace: str = "cdi"
    """Where CDIConfig-named objects (the trusted proxy CA ConfigMap) live."""


TMP_SIZE_LIMIT = "64Mi"
"""The importer's /tmp holds only sockets and small files (TLS, CA bundle): image data goes
to the scratch PVC, never to the node's disk."""


def pod_name(pvc_name: str) -> str:
    return ip.POD_NAME_PREFIX + pvc_name


def _registry_host(endpoint: str) -> str:
    rest = endpoint.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _env(pvc: Obj, req: ImportRequest, config: EffectiveConfig) -> list[Obj]:
    block = claims.volume_mode(pvc) == claims.BLOCK
    cls = o.get_path(pvc, "spec", "storageClassName")
    overhead = "0" if block else config.overhead_for(cls)
    prealloc = req.preallocation if req.preallocation is not None else config.preallocation
    insecure = req.insecure_skip_verify or (
        req.source is SourceKind.REGISTRY
        and _registry_host(req.endpoint) in config.insecure_registries)
    out: list[Obj] = [
        {"name": env.SOURCE, "value": req.source.importer_value},
        {"name": env.ENDPOINT, "value": req.endpoint},
        {"name": env.CONTENT_TYPE, "value": req.content_type},
        {"name": env.IMAGE_SIZE, "value": claims.requested_size(pvc)},
        {"name": env.OWNER_UID, "value": o.uid(pvc)},
        {"name": env.FILESYSTEM_OVERHEAD, "value": overhead},
        {"name": env.INSECURE_TLS, "value": "true" if insecure else "false"},
        {"name": env.PREALLOCATION, "value": "true" if prealloc else "false"},
    ]
    if req.checksum:
        out.append({"name": env.CHECKSUM, "value": req.checksum})
    if req.secret and req.source is SourceKind.GCS:
        # CDI's way for GCS: the Secret is a volume at /google, its credentials.json the key.
        out.append({"name": env.GOOGLE_CREDENTIALS, "value": env.GOOGLE_CREDENTIALS_FILE})
    elif req.secret:
        out += [
            {"name": env.ACCESS_KEY_ID, "valueFrom": {"secretKeyRef": {
                "name": req.secret, "key": "accessKeyId"}}},
            {"name": env.SECRET_KEY, "valueFrom": {"secretKeyRef": {
                "name": req.secret, "key": "secretKey"}}},
        ]
    if req.cert_configmap:
        out.append({"name": env.CERT_DIR, "value": env.DEFAULT_CERT_DIR})
    for n, header in enumerate(req.extra_headers):
        out.append({"name": f"{env.EXTRA_HEADER_PREFIX}{n}", "value": header})
    if req.secret_extra_headers:
        out.append({"name": ip.SECRET_EXTRA_HEADERS_DIR,
                    "value": ip.DEFAULT_SECRET_EXTRA_HEADERS_DIR})
    if config.insecure_registries:
        out.append({"name": env.INSECURE_REGISTRIES,
                    "value": ",".join(config.insecure_registries)})
    if req.platform_arch:
        out.append({"name": env.PLATFORM_ARCH, "value": req.platform_arch})
    if config.deny_local_addresses:
        out.append({"name": env.DENY_LOCAL_ADDRESSES, "value": "true"})
    out += proxysecret.env(pvc, config)
    if config.trusted_ca_proxy:
        out.append(proxycert.env_var())
    return out


def build(pvc: Obj, req: ImportRequest, config: EffectiveConfig, settings: PodSettings) -> Obj:
    block = claims.volume_mode(pvc) == claims.BLOCK
    volumes: list[Obj] = [{"name": ip.DATA_VOLUME_NAME,
                           "persistentVolumeClaim": {"claimName": o.name(pvc)}},
                          podspec.tmp_volume(TMP_SIZE_LIMIT)]
    mounts: list[Obj] = []
    devices: list[Obj] = []
    if block:
        devices.append({"name": ip.DATA_VOLUME_NAME, "devicePath": env.DEFAULT_BLOCK_DEST})
    else:
        mounts.append({"name": ip.DATA_VOLUME_NAME, "mountPath": env.DEFAULT_DATA_DIR})
    if scratch.required(pvc):
        volumes.append({"name": cdiscratch.VOLUME_NAME, "persistentVolumeClaim": {
            "claimName": cdiscratch.scratch_name(o.name(pvc))}})
        mounts.append({"name": cdiscratch.VOLUME_NAME, "mountPath": env.DEFAULT_SCRATCH_DIR})
    if req.cert_configmap:
        volumes.append({"name": ip.CERT_VOLUME_NAME,
                        "configMap": {"name": req.cert_configmap}})
        mounts.append({"name": ip.CERT_VOLUME_NAME, "mountPath": env.DEFAULT_CERT_DIR})
    if req.secret and req.source is SourceKind.GCS:
        volumes.append({"name": ip.GCS_SECRET_VOLUME_NAME, "secret": {"secretName": req.secret}})
        mounts.append({"name": ip.GCS_SECRET_VOLUME_NAME, "readOnly": True,
                       "mountPath": env.GOOGLE_CREDENTIALS_DIR})
    if config.trusted_ca_proxy:
        volumes.append(proxycert.volume(pvc))
        mounts.append(proxycert.mount())
    for n, secret in enumerate(req.secret_extra_headers):
        vol = f"cdi-secret-extra-headers-vol-{n}"
        volumes.append({"name": vol, "secret": {"secretName": secret}})
        mounts.append({"name": vol, "readOnly": True,
                       "mountPath": f"{ip.DEFAULT_SECRET_EXTRA_HEADERS_DIR}/secret{n}"})
    container: Obj = {
        "name": ip.CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "env": _env(pvc, req, config),
        "ports": [{"name": "metrics", "containerPort": env.METRICS_PORT, "protocol": "TCP"}],
        **podspec.container_common(config),
    }
    container["volumeMounts"] = [*mounts, podspec.tmp_mount()]
    if devices:
        container["volumeDevices"] = devices
    pod_spec: Obj = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ip.IMPORTER_UID,
            "fsGroup": ip.IMPORTER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        **podspec.pod_common(config),
    }
    if req.priority_class:
        pod_spec["priorityClassName"] = req.priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(o.name(pvc)),
            "namespace": o.namespace(pvc),
            "labels": {
                ann.LABEL_APP: ann.LABEL_APP_VALUE,
                ann.LABEL_COMPONENT: ann.LABEL_COMPONENT_IMPORTER,
                ann.LABEL_PROMETHEUS: "true",
                **protocol.owner_labels(pvc, protocol.Kind.IMPORT),
            },
            "annotations": {**propagation.pod_annotations(pvc),
                            ann.CREATED_BY_CONTROLLER: "yes"},
            "ownerReferences": [o.owner_ref(pvc)],
        },
        "spec": pod_spec,
    }

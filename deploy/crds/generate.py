"""Generate the CRD manifests of deploy/crds/ from one readable description.

Why a generator: CDI's field names must be exact and every field needs a description
(so `kubectl explain dv.spec.source.http` is useful); writing four structural schemas by
hand in YAML would repeat PersistentVolumeClaimSpec and friends many times.
Run `python3 deploy/crds/generate.py` after a change; tests check the output is current.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]
HERE = Path(__file__).resolve().parent


def s(desc: str, **extra: Any) -> Schema:
    return {"type": "string", "description": desc, **extra}


def b(desc: str) -> Schema:
    return {"type": "boolean", "description": desc}


def i(desc: str, **extra: Any) -> Schema:
    return {"type": "integer", "format": "int64", "description": desc, **extra}


def arr(desc: str, items: Schema) -> Schema:
    return {"type": "array", "description": desc, "items": items}


def obj(desc: str, props: dict[str, Schema] | None = None, required: list[str] | None = None,
        **extra: Any) -> Schema:
    out: Schema = {"type": "object", "description": desc}
    if props is not None:
        out["properties"] = props
    if required:
        out["required"] = required
    out.update(extra)
    return out


def smap(desc: str, values: Schema | None = None) -> Schema:
    return obj(desc, additionalProperties=values or {"type": "string"})


def quantity(desc: str) -> Schema:
    return {
        "description": desc,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                   r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        "x-kubernetes-int-or-string": True,
    }


def resources(desc: str) -> Schema:
    return obj(desc, {
        "limits": smap("Maximum amount of compute resources allowed.", quantity("A quantity.")),
        "requests": smap("Minimum amount of compute resources required.",
                         quantity("A quantity.")),
        "claims": arr("Names of resources, defined in spec.resourceClaims, used by a container.",
                      obj("A resource claim.", {"name": s("Name of the claim."),
                                                "request": s("Request name in the claim.")},
                          ["name"])),
    })


def label_selector(desc: str) -> Schema:
    return obj(desc, {
        "matchLabels": smap("A map of {key,value} pairs; all must match."),
        "matchExpressions": arr("A list of label selector requirements; all must match.", obj(
            "A label selector requirement.", {
                "key": s("The label key the selector applies to."),
                "operator": s("In, NotIn, Exists or DoesNotExist."),
                "values": arr("Values for In and NotIn.", s("A value.")),
            }, ["key", "operator"])),
    }, **{"x-kubernetes-map-type": "atomic"})


ACCESS_MODES = arr(
    "The desired access modes of the volume (ReadWriteOnce, ReadOnlyMany, ReadWriteMany, "
    "ReadWriteOncePod).", s("An access mode."))
VOLUME_MODE = s("Block or Filesystem. Filesystem is implied when not included in claim spec.")


def claim_spec(desc: str, storage: bool) -> Schema:
    props: dict[str, Schema] = {
        "accessModes": ACCESS_MODES,
        "selector": label_selector("A label query over volumes to consider for binding."),
        "resources": obj(
            "The minimum resources the volume should have. For `storage`, a missing request "
            "is taken from the image or source size where it can be known.", {
                "limits": smap("Maximum amount of storage.", quantity("A quantity.")),
                "requests": smap("Minimum amount of storage (key `storage`).",
                                 quantity("A quantity.")),
            }),
        "volumeName": s("The binding reference to the PersistentVolume backing this claim."),
        "storageClassName": s("Name of the StorageClass required by the claim."),
        "volumeMode": VOLUME_MODE,
        "dataSource": obj("An existing source to populate the volume from.", {
            "apiGroup": s("The group of the resource; core when empty."),
            "kind": s("The kind of the resource."),
            "name": s("The name of the resource."),
        }, ["kind", "name"], **{"x-kubernetes-map-type": "atomic"}),
        "dataSourceRef": obj("The object to populate the volume from (a volume populator).", {
            "apiGroup": s("The group of the resource; core when empty."),
            "kind": s("The kind of the resource."),
            "name": s("The name of the resource."),
            "namespace": s("The namespace of the resource."),
        }, ["kind", "name"]),
        "volumeAttributesClassName": s("The VolumeAttributesClass used by this claim."),
    }
    return obj(desc, props)


SECRET_REF = s("Name of a Secret in the DataVolume's namespace with keys `accessKeyId` and "
               "`secretKey` (user name and password).")
CERT_CM = s("Name of a ConfigMap in the DataVolume's namespace holding the CA bundle that "
            "signs the server's certificate.")

SOURCE_HTTP = obj("Import a disk image or archive from an http or https URL.", {
    "url": s("URL of the image (http:// or https://). Compressed images (gz, xz, zst, bz2) "
             "and qcow2, vmdk, vhd, vhdx, vdi, raw and iso are recognised."),
    "secretRef": SECRET_REF,
    "certConfigMap": CERT_CM,
    "extraHeaders": arr("Extra HTTP request headers, each `Name: value`.", s("A header.")),
    "secretExtraHeaders": arr("Names of Secrets whose each data value is one extra header "
                              "line `Name: value` (for headers carrying credentials).",
                              s("A Secret name.")),
    "checksum": s("Expected checksum of the bytes served, `<alg>:<hex>` with alg md5, sha1, "
                  "sha256 or sha512. A mismatch fails the import permanently."),
    "insecureSkipVerify": b("Skip TLS verification of the server."),
}, ["url"])
SOURCE_S3 = obj("Import from an S3-compatible object store.", {
    "url": s("`s3://bucket/key` or an endpoint URL such as `http://host:port/bucket/key`."),
    "secretRef": SECRET_REF,
    "certConfigMap": CERT_CM,
}, ["url"])
SOURCE_GCS = obj("Import from Google Cloud Storage.", {
    "url": s("`gs://bucket/object` or an https URL of the object."),
    "secretRef": s("Name of a Secret with the service account key."),
}, ["url"])
SOURCE_REGISTRY = obj("Import a disk image from a container image (containerDisk layout: "
                      "the image file under /disk).", {
    "url": s("`docker://host[:port]/repo[:tag|@digest]` or `oci-archive://path`."),
    "imageStream": s("Name of an OpenShift ImageStream to resolve (instead of url)."),
    "pullMethod": s("`pod` (default: the importer pulls the image) or `node` (the node's "
                    "container runtime pulls it).", enum=["pod", "node"]),
    "secretRef": SECRET_REF,
    "certConfigMap": CERT_CM,
    "platform": obj("Platform of the image to pick from a manifest list.", {
        "architecture": s("CPU architecture, e.g. amd64 or arm64."),
    }),
})
NS_NAME = {"namespace": s("Namespace of the object."), "name": s("Name of the object.")}
SOURCE_IMAGEIO = obj("Import a disk from oVirt via ovirt-imageio.", {
    "url": s("URL of the oVirt engine API."),
    "secretRef": s("Secret with the engine credentials."),
    "certConfigMap": CERT_CM,
    "diskId": s("ID of the disk in oVirt."),
    "insecureSkipVerify": b("Skip TLS verification."),
}, ["url", "diskId"])
SOURCE_VDDK = obj("Import a disk from VMware vSphere via VDDK.", {
    "url": s("URL of the vCenter or ESXi host."),
    "uuid": s("UUID of the virtual machine."),
    "backingFile": s("Path of the VMDK in the datastore."),
    "thumbprint": s("SHA1 thumbprint of the host certificate."),
    "secretRef": s("Secret with the vCenter credentials."),
    "initImageURL": s("Container image carrying the VDDK library."),
    "extraArgs": s("ConfigMap with extra VDDK arguments."),
})

DV_SOURCE = obj("Where the data comes from: exactly one source type.", {
    "http": SOURCE_HTTP,
    "s3": SOURCE_S3,
    "gcs": SOURCE_GCS,
    "registry": SOURCE_REGISTRY,
    "pvc": obj("Clone an existing PVC.", NS_NAME, ["namespace", "name"]),
    "snapshot": obj("Restore from a VolumeSnapshot.", NS_NAME, ["namespace", "name"]),
    "upload": obj("The volume is an upload target (virtctl image-upload)."),
    "blank": obj("Create an empty raw disk image of the requested size."),
    "imageio": SOURCE_IMAGEIO,
    "vddk": SOURCE_VDDK,
})

CONDITION = obj("A condition of the object.", {
    "type": s("Ready, Bound or Running."),
    "status": s("True, False or Unknown."),
    "reason": s("Machine-readable reason of the last transition."),
    "message": s("Human-readable details."),
    "lastTransitionTime": s("When the status last changed.", format="date-time"),
    "lastHeartbeatTime": s("When the condition was last observed.", format="date-time"),
}, ["type", "status"])

DV_SPEC = obj("DataVolumeSpec: what to put into which volume.", {
    "source": DV_SOURCE,
    "sourceRef": obj("A reference to a DataSource to use as the source (instead of source).", {
        "kind": s("The kind of the source reference; DataSource.", enum=["DataSource"]),
        "namespace": s("Namespace of the DataSource; the DataVolume's when empty."),
        "name": s("Name of the DataSource."),
    }, ["kind", "name"]),
    "pvc": claim_spec("The PVC to create, used literally (no defaults applied).", False),
    "storage": claim_spec(
        "The PVC to create, with defaults: missing accessModes/volumeMode from the "
        "StorageProfile, a missing class from the default virt class then the cluster "
        "default, and the request inflated by the filesystem overhead in Filesystem mode.",
        True),
    "contentType": s("`kubevirt` (default: a disk image written to disk.img or the block "
                     "device) or `archive` (a tar extracted into the volume).",
                     enum=["kubevirt", "archive", ""]),
    "preallocation": b("Preallocate the whole disk instead of writing it sparsely."),
    "priorityClassName": s("PriorityClass of the transfer pod."),
    "checkpoints": arr("Warm-migration checkpoints (vddk).", obj("A checkpoint.", {
        "current": s("The current checkpoint."), "previous": s("The previous checkpoint."),
    }, ["current", "previous"])),
    "finalCheckpoint": b("Whether the last checkpoint is the final one."),
})

DV_STATUS = obj("DataVolumeStatus: the observed state of the transfer.", {
    "phase": s("Pending, ImportScheduled, ImportInProgress, WaitForFirstConsumer, "
               "Succeeded, Failed, ..."),
    "progress": s("Percentage of the transfer done, `NN.NN%`; `N/A` when unknown."),
    "restartCount": {"type": "integer", "format": "int32",
                     "description": "Restarts of the transfer pod (only grows)."},
    "claimName": s("Name of the PVC holding the data."),
    "conditions": arr("Ready, Bound and Running conditions.", CONDITION),
})


def crd(plural: str, singular: str, kind: str, scope: str, short: list[str], desc: str,  # noqa: PLR0917
        spec: Schema, status: Schema, columns: list[Schema], categories: list[str],
        spec_required: bool = True) -> Schema:
    root = obj(desc, {
        "apiVersion": s("Versioned schema of this representation of an object."),
        "kind": s("The REST resource this object represents."),
        "metadata": {"type": "object"},
        "spec": spec,
        "status": status,
    }, ["spec"] if spec_required else None)
    names: Schema = {"plural": plural, "singular": singular, "kind": kind,
                     "listKind": kind + "List"}
    if short:
        names["shortNames"] = short
    if categories:
        names["categories"] = categories
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cdi.kubevirt.io",
                     "labels": {"cdi.kubevirt.io": ""}},
        "spec": {
            "group": "cdi.kubevirt.io",
            "names": names,
            "scope": scope,
            "versions": [{
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


AGE: Schema = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

DATAVOLUME = crd(
    "datavolumes", "datavolume", "DataVolume", "Namespaced", ["dv", "dvs"],
    "DataVolume is an abstraction on top of PersistentVolumeClaims to allow easy population "
    "of those PersistentVolumeClaims with relation to VirtualMachines.",
    DV_SPEC, DV_STATUS,
    [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
         "description": "The phase the data volume is in."},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress",
         "description": "Transfer progress in percentage if known, N/A otherwise."},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount",
         "description": "The number of times the transfer has been restarted."},
        AGE,
    ],
    ["all"],
)

OVERHEAD_PATTERN = r"^(0(?:\.\d{1,3})?|1)$"
IMPORT_PROXY = obj("Proxy settings of importer pods.", {
    "HTTPProxy": s("Proxy for http:// sources."),
    "HTTPSProxy": s("Proxy for https:// sources."),
    "noProxy": s("Comma-separated hosts that bypass the proxy."),
    "trustedCAProxy": s("ConfigMap (in the CDI namespace) with the proxy's CA bundle."),
})
FS_OVERHEAD = obj("Fraction of a Filesystem volume reserved for filesystem metadata.", {
    "global": s("Default overhead for all storage classes, e.g. `0.06`.",
                pattern=OVERHEAD_PATTERN),
    "storageClass": smap("Overhead per storage class name.",
                         s("An overhead.", pattern=OVERHEAD_PATTERN)),
})
CDICONFIG = crd(
    "cdiconfigs", "cdiconfig", "CDIConfig", "Cluster", [],
    "CDIConfig provides a user configuration for CDI (the singleton named `config`).",
    obj("CDIConfigSpec: cluster-wide settings.", {
        "uploadProxyURLOverride": s("Public URL of the upload proxy, for virtctl."),
        "importProxy": IMPORT_PROXY,
        "scratchSpaceStorageClass": s("StorageClass of scratch volumes."),
        "podResourceRequirements": resources("Resources of transfer pods."),
        "featureGates": arr("Enabled feature gates.", s("A feature gate.")),
        "filesystemOverhead": FS_OVERHEAD,
        "preallocation": b("Preallocate disks by default."),
        "insecureRegistries": arr("Registries (host[:port]) reached without TLS verification.",
                                  s("A registry.")),
        "dataVolumeTTLSeconds": {"type": "integer", "format": "int32",
                                 "description": "Garbage-collect succeeded DataVolumes after "
                                                "this many seconds (-1: never)."},
        "tlsSecurityProfile": obj("TLS settings of CDI's servers.",
                                  **{"x-kubernetes-preserve-unknown-fields": True}),
        "imagePullSecrets": arr("Pull secrets of CDI's pods.",
                                obj("A Secret reference.", {"name": s("Secret name.")})),
        "logVerbosity": {"type": "integer", "format": "int32",
                         "description": "Log verbosity of CDI's components."},
        "podRestartLimit": {"type": "integer", "format": "int32", "minimum": 0,
                            "description": "cdi-py, not CDI: an importer pod that failed "
                                           "without a permanent reason (a retryable reason, "
                                           "OOMKilled, killed by a signal) after this many "
                                           "restarts ends its DataVolume Failed with the "
                                           "last reason (default 5; 0: restart forever, as "
                                           "CDI does)."},
    }),
    obj("CDIConfigStatus: the effective values.", {
        "uploadProxyURL": s("The URL of the upload proxy."),
        "uploadProxyCA": s("CA bundle of the upload proxy."),
        "importProxy": IMPORT_PROXY,
        "scratchSpaceStorageClass": s("The StorageClass used for scratch volumes."),
        "defaultPodResourceRequirements": resources("Resources of transfer pods."),
        "filesystemOverhead": FS_OVERHEAD,
        "preallocation": b("Whether disks are preallocated by default."),
        "dataVolumeTTLSeconds": {"type": "integer", "format": "int32",
                                 "description": "Effective DataVolume TTL."},
        "imagePullSecrets": arr("Pull secrets.",
                                obj("A Secret reference.", {"name": s("Secret name.")})),
        "podRestartLimit": {"type": "integer", "format": "int32",
                            "description": "The restart limit in force (0: none)."},
    }),
    [AGE],
    [],
)

CLAIM_PROPERTY_SET = obj("Access modes and volume mode that work for a class.", {
    "accessModes": ACCESS_MODES,
    "volumeMode": VOLUME_MODE,
})
SP_COMMON: dict[str, Schema] = {
    "cloneStrategy": s("copy, snapshot or csi-clone.", enum=["copy", "snapshot", "csi-clone"]),
    "claimPropertySets": arr("Claim properties, the first one is the default.",
                             CLAIM_PROPERTY_SET),
    "dataImportCronSourceFormat": s("pvc or snapshot.", enum=["pvc", "snapshot"]),
    "snapshotClass": s("VolumeSnapshotClass to use."),
}
STORAGEPROFILE = crd(
    "storageprofiles", "storageprofile", "StorageProfile", "Cluster", [],
    "StorageProfile provides the recommended PVC parameters of one StorageClass.",
    obj("StorageProfileSpec: overrides for the class.", dict(SP_COMMON)),
    obj("StorageProfileStatus: the effective parameters.", {
        "storageClass": s("The StorageClass this profile describes."),
        "provisioner": s("The class's provisioner."),
        **SP_COMMON,
    }),
    [AGE],
    [],
    spec_required=False,
)

DATASOURCE = crd(
    "datasources", "datasource", "DataSource", "Namespaced", ["das"],
    "DataSource references an import/clone source for a DataVolume.",
    obj("DataSourceSpec: what the DataSource points to.", {
        "source": obj("The source: a PVC or a snapshot.", {
            "pvc": obj("A PVC.", NS_NAME, ["namespace", "name"]),
            "snapshot": obj("A VolumeSnapshot.", NS_NAME, ["namespace", "name"]),
            "dataSource": obj("Another DataSource.", NS_NAME, ["name"]),
        }),
    }, ["source"]),
    obj("DataSourceStatus.", {
        "conditions": arr("Ready condition.", CONDITION),
        "source": obj("The resolved source.", {
            "pvc": obj("A PVC.", NS_NAME),
            "snapshot": obj("A VolumeSnapshot.", NS_NAME),
        }),
    }),
    [AGE],
    ["all"],
)

ALL = {
    "datavolumes.yaml": DATAVOLUME,
    "cdiconfigs.yaml": CDICONFIG,
    "storageprofiles.yaml": STORAGEPROFILE,
    "datasources.yaml": DATASOURCE,
}


def render(doc: Schema) -> str:
    return "# Generated by deploy/crds/generate.py; edit that, not this.\n" + yaml.safe_dump(
        doc, sort_keys=False, width=100)


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for name, doc in ALL.items():
        path = HERE / name
        text = render(doc)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale CRDs, run deploy/crds/generate.py:", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

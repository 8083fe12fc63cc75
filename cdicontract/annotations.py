"""Annotation and label keys CDI users and tools read and write (kept for compatibility).

The legacy PVC-annotation API is both an input (a PVC annotated with an import endpoint is
imported without a DataVolume) and an output (the `storage.pod.*` / `storage.condition.*`
annotations written back). The controller also uses the outputs as the durable record of
an import's outcome, so a lost pod never restarts a finished or permanently failed import.
"""

PREFIX = "cdi.kubevirt.io/"

# Inputs of the legacy API.
IMPORT_ENDPOINT = PREFIX + "storage.import.endpoint"
IMPORT_SOURCE = PREFIX + "storage.import.source"
CONTENT_TYPE = PREFIX + "storage.contentType"
IMPORT_SECRET_NAME = PREFIX + "storage.import.secretName"
IMPORT_CERT_CONFIGMAP = PREFIX + "storage.import.certConfigMap"
IMPORT_CHECKSUM = PREFIX + "storage.import.checksum"
UPLOAD_TARGET = PREFIX + "storage.upload.target"
CLONE_REQUEST = "k8s.io/CloneRequest"

# Ours, carried from a DataVolume's source to its PVC so the import reconciler needs only
# the PVC (CDI stores the same facts in annotations of its own).
IMPORT_EXTRA_HEADERS = PREFIX + "storage.import.extraHeaders"
IMPORT_SECRET_EXTRA_HEADERS = PREFIX + "storage.import.secretExtraHeaders"
IMPORT_INSECURE_SKIP_VERIFY = PREFIX + "storage.import.insecureSkipVerify"
IMPORT_REGISTRY_IMAGE_STREAM = PREFIX + "storage.import.registryImageStream"
IMPORT_PLATFORM_ARCH = PREFIX + "storage.import.platformArchitecture"
PREALLOCATION_REQUESTED = PREFIX + "storage.preallocation.requested"
# CDI's key (all lower case): the priority class of the PVC's transfer pods.
PRIORITY_CLASS_NAME = PREFIX + "storage.pod.priorityclassname"
# What earlier versions of this controller wrote instead; still read on PVCs they made.
LEGACY_PRIORITY_CLASS_NAME = PREFIX + "storage.pod.priorityClassName"

# Outputs of the legacy API.
IMPORT_POD_NAME = PREFIX + "storage.import.importPodName"
POD_PHASE = PREFIX + "storage.pod.phase"
POD_READY = PREFIX + "storage.pod.ready"
POD_RESTARTS = PREFIX + "storage.pod.restarts"
CONDITION_RUNNING = PREFIX + "storage.condition.running"
CONDITION_RUNNING_REASON = PREFIX + "storage.condition.running.reason"
CONDITION_RUNNING_MESSAGE = PREFIX + "storage.condition.running.message"
UPLOAD_POD_NAME = PREFIX + "storage.uploadPodName"
# "true" once the transfer pod reported that it preallocated the volume.
PREALLOCATION_APPLIED = PREFIX + "storage.preallocation"
# While the PVC is Pending: "false", "Pending" and the latest event about the PVC (CDI's
# UpdatePVCBoundConditionFromEvents); removed once it is Bound.
CONDITION_BOUND = PREFIX + "storage.condition.bound"
CONDITION_BOUND_REASON = PREFIX + "storage.condition.bound.reason"
CONDITION_BOUND_MESSAGE = PREFIX + "storage.condition.bound.message"
# Set by CDI's populators when a PVC is populated; never passed from a DataVolume.
POPULATED_FOR = PREFIX + "storage.populatedFor"

# Pod annotations CDI passes from the DataVolume/PVC to its transfer pods (its
# `allowedAnnotations`), the sidecar opt-outs with CDI's defaults.
POD_NETWORK = "k8s.v1.cni.cncf.io/networks"
POD_MULTUS_DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
POD_SIDECAR_ISTIO = "sidecar.istio.io/inject"
POD_SIDECAR_ISTIO_DEFAULT = "false"
POD_SIDECAR_LINKERD = "linkerd.io/inject"
POD_SIDECAR_LINKERD_DEFAULT = "disabled"

# Behaviour switches users set.
IMMEDIATE_BINDING = PREFIX + "storage.bind.immediate.requested"
DEFAULT_VIRT_CLASS = "storageclass.kubevirt.io/is-default-virt-class"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
CREATED_BY_CONTROLLER = PREFIX + "storage.createdByController"
POD_RETAIN_AFTER_COMPLETION = PREFIX + "storage.pod.retainAfterCompletion"

# Labels.
LABEL_APP = "app"
LABEL_APP_VALUE = "containerized-data-importer"
LABEL_COMPONENT = "cdi.kubevirt.io"
LABEL_COMPONENT_IMPORTER = "importer"
LABEL_PROMETHEUS = "prometheus.cdi.kubevirt.io"
LABEL_STORAGE_IMPORT = "cdi.kubevirt.io/storage.import"

# Every pod, Service and Secret of a transfer carries the UID of what it serves (the
# DataVolume, or the bare PVC of the legacy API) and its kind (`import`, `upload`,
# `clone`), so the controller finds them by label: a clone's source pod lives in another
# namespace and cannot carry an owner reference there.
OWNER_UID_LABEL = PREFIX + "owner-uid"
TRANSFER_LABEL = PREFIX + "transfer"

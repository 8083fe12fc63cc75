"""Kubernetes API coordinates of CDI's resources, as CDI publishes them (kept for compatibility)."""

GROUP = "cdi.kubevirt.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"

DATAVOLUME_KIND = "DataVolume"
DATAVOLUMES = "datavolumes"
CDICONFIG_KIND = "CDIConfig"
CDICONFIGS = "cdiconfigs"
STORAGEPROFILE_KIND = "StorageProfile"
STORAGEPROFILES = "storageprofiles"
DATASOURCE_KIND = "DataSource"
DATASOURCES = "datasources"

# The cluster-scoped CDIConfig singleton.
CDICONFIG_NAME = "config"

# DataVolume phases (status.phase).
PHASE_UNSET = ""
PHASE_PENDING = "Pending"
PHASE_PVC_BOUND = "PVCBound"
PHASE_IMPORT_SCHEDULED = "ImportScheduled"
PHASE_IMPORT_IN_PROGRESS = "ImportInProgress"
PHASE_WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASE_UNKNOWN = "Unknown"

PROGRESS_UNKNOWN = "N/A"
PROGRESS_DONE = "100.0%"

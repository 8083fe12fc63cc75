"""Names in the importer pod that the controller sets and the importer reads (beyond envvars)."""

# Directory holding one sub-directory per Secret named in `secretExtraHeaders`; every
# file in them is one header line `Name: value` (CDI mounts them the same way).
SECRET_EXTRA_HEADERS_DIR = "IMPORTER_SECRET_EXTRA_HEADERS_DIR"  # noqa: S105
DEFAULT_SECRET_EXTRA_HEADERS_DIR = "/extraheaders"  # noqa: S105

CONTAINER_NAME = "importer"
POD_NAME_PREFIX = "importer-"
DATA_VOLUME_NAME = "cdi-data-vol"
CERT_VOLUME_NAME = "cdi-cert-vol"
PROXY_CERT_VOLUME_NAME = "cdi-proxy-cert-vol"
PROXY_CERT_DIR = "/proxycerts"
# Non-root user CDI's importer image runs as.
IMPORTER_UID = 107
# The GCS `secretRef` Secret's volume, mounted at /google (CDI's name and path).
GCS_SECRET_VOLUME_NAME = "cdi-secret-vol"  # noqa: S105

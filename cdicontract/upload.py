"""What the upload proxy, the upload server and the controller agree on about an upload.

The paths clients POST to (CDI's `common.ProxyPaths`, the same on the proxy and on the
upload server), where archives go, the name of the per-PVC Service the controller creates
and the proxy dials, and the common name the upload server expects on the proxy's client
certificate. Pure facts and two pure functions; no I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum

UPLOAD_POD_PREFIX = "cdi-upload"
"""Pod and Service of the upload server are `cdi-upload-<pvc>` (shortened when too long)."""

UPLOAD_SERVER_PORT = 8443
"""The upload server listens here; its Service maps port 443 to it."""

CLIENT_COMMON_NAME = "client.upload-server.cdi.kubevirt.io"
"""The subject CN of the proxy's client certificate, which the upload server checks."""

CONTENT_TYPE_HEADER = "x-cdi-content-type"
"""CDI's header naming a clone stream's content; uploads through the proxy never set it."""


class Variant(StrEnum):
    """How a client sends the image: the last path segment."""

    SYNC = "upload"
    ASYNC = "upload-async"
    FORM = "upload-form"
    FORM_ASYNC = "upload-form-async"

    @property
    def is_async(self) -> bool:
        return self in (Variant.ASYNC, Variant.FORM_ASYNC)

    @property
    def is_form(self) -> bool:
        """A multipart form whose field `file` holds the image."""
        return self in (Variant.FORM, Variant.FORM_ASYNC)


API_VERSIONS = ("v1beta1", "v1alpha1")
FORM_FIELD = "file"
ARCHIVE_SEGMENT = "upload-archive"


def path(version: str, variant: Variant) -> str:
    return f"/{version}/{variant.value}"


PROXY_PATHS: tuple[str, ...] = tuple(path(v, k) for v in API_VERSIONS for k in Variant)
"""Every path the upload proxy and the upload server accept (CDI's eight)."""


def archive_path(version: str) -> str:
    """Where an upload into an `archive` PVC goes, whatever path the client used (CDI)."""
    return f"/{version}/{ARCHIVE_SEGMENT}"


# Go's strconv.ParseBool, which CDI uses for `storage.pod.ready`.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def parse_bool(value: str | None) -> bool:
    return value in _TRUE


def _fnv1a_32(text: str) -> str:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def _shorten(base: str, suffix: str, max_length: int) -> str:
    """OpenShift's `naming.GetName`, which CDI uses to fit names into a length limit."""
    name = f"{base}-{suffix}"
    if len(name) <= max_length:
        return name
    base_length = max_length - 10 - len(suffix)
    if base_length <= 0:
        prefix = base[: min(len(base), max(0, max_length - 9))]
        return f"{prefix}-{_fnv1a_32(name)}"[:max_length]
    return f"{base[:base_length]}-{_fnv1a_32(base)}-{suffix}"


_DNS1123_SUBDOMAIN_MAX = 253
_DNS1035_LABEL_MAX = 63


def upload_resource_name(pvc: str) -> str:
    """The upload server pod's name for `pvc` (CDI's `createUploadResourceName`)."""
    return _shorten(UPLOAD_POD_PREFIX, pvc, _DNS1123_SUBDOMAIN_MAX)


def upload_service_name(pvc: str) -> str:
    """The upload server Service's name for `pvc`: a DNS label, so no dots, at most 63.

    CDI's `createUploadServiceNameFromPvcName`: the resource name with dots turned into
    dashes, shortened with a hash (and the suffix `cdi`) when longer than a label allows.
    """
    base = upload_resource_name(pvc).replace(".", "-")
    if len(base) <= _DNS1035_LABEL_MAX:
        return base
    return _shorten(base, "cdi", _DNS1035_LABEL_MAX)


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(text: str) -> bool:
    """A valid namespace name (RFC 1123 label)."""
    return len(text) <= _DNS1035_LABEL_MAX and bool(_LABEL.match(text))


def is_dns_subdomain(text: str) -> bool:
    """A valid PVC name (RFC 1123 subdomain)."""
    return 0 < len(text) <= _DNS1123_SUBDOMAIN_MAX and all(
        is_dns_label(part) for part in text.split(".")
    )


# ---------------------------------------------------------------------------------------
# Beyond CDI: resumable uploads and checksums (our extension; CDI's clients never send
# these headers, so they change nothing for virtctl).
#
# Resume: `HEAD <any upload path>` (through the proxy, with the token) answers 200 and,
# when the upload server holds a paused upload, `Upload-Offset: N`, the bytes of the body
# it has taken so far (also while it is still receiving: a drop it has not noticed yet;
# a POST with that offset then gets 503 until it has, or 416 with the newer offset).
# A client then POSTs the rest with `Upload-Offset: N`; the server continues its one
# pipeline from there. An offset other than the server's gets 416 with
# the server's `Upload-Offset`. A POST without the header while an upload is paused
# abandons it (the target is aborted, nothing left) and starts over; while a connection
# is still sending, another POST gets 503.
UPLOAD_OFFSET_HEADER = "Upload-Offset"
# Checksum: `Upload-Checksum: <algorithm>:<hex>` (algorithms as DataVolume checksums:
# md5, sha1, sha256, sha512) over the body as sent (the compressed file). Verified
# before the upload is declared done; a mismatch is 400 and leaves no image behind.
UPLOAD_CHECKSUM_HEADER = "Upload-Checksum"
# Sync uploads whose conversion outlasts KEEPALIVE_AFTER_SECONDS after the last byte get
# their 200 early and a space every KEEPALIVE_INTERVAL_SECONDS until the result line,
# so an ingress' read timeout never cuts a finished upload ("timeout at 99%").
KEEPALIVE_AFTER_SECONDS = 5.0
KEEPALIVE_INTERVAL_SECONDS = 5.0
# The upload server's answers: a sync 200's body is the upload's termination report
# (cdicontract.report) as one JSON line, preceded by keepalive spaces when the 200 went
# out before the result was known; `TerminationReport.from_json(body.strip())` reads it,
# and a reason other than Completed there is a failed upload despite the 200. Failures
# known before the answer are plain text ("Saving stream failed: <reason>: <message>")
# with 400 (the image or body is at fault: too large, checksum, unsafe) or 500. An async
# 200 has an empty body. 416 carries the server's `Upload-Offset`.

# ---------------------------------------------------------------------------------------
# The upload server pod (created by the controller, run by `cdi-uploadserver`).
UPLOAD_SERVER_IMAGE = "cdi-py/uploadserver"
UPLOAD_PROGRESS_METRIC = "kubevirt_cdi_upload_progress_total"
UPLOAD_SERVER_METRICS_PORT = 8444
"""Progress metrics (HTTPS, self-signed, as the importer's), labelled ownerUID."""
TLS_DIR = "/etc/cdi-uploadserver/tls"
"""Mounted from the Secret named like the pod: tls.crt, tls.key (the server's), ca.crt
(the CA the proxy's client certificate must chain to)."""
ENV_TLS_DIR = "UPLOADSERVER_TLS_DIR"
ENV_CLIENT_NAME = "UPLOADSERVER_CLIENT_NAME"
ENV_DEST = "UPLOADSERVER_DEST"
ENV_CONTENT_TYPE = "UPLOADSERVER_CONTENT_TYPE"
ENV_IMAGE_SIZE = "UPLOADSERVER_IMAGE_SIZE"
ENV_FILESYSTEM_OVERHEAD = "FILESYSTEM_OVERHEAD"
ENV_PREALLOCATION = "PREALLOCATION"
ENV_OWNER_UID = "OWNER_UID"
ENV_TERMINATION_LOG = "UPLOADSERVER_TERMINATION_LOG"
ENV_PAUSE_TIMEOUT = "UPLOADSERVER_PAUSE_TIMEOUT_SECONDS"
"""How long a paused (disconnected) upload waits for its client to resume; default 600."""

# Secrets in the controller's namespace (created and rotated by the controller).
SERVER_CA_SECRET = "cdi-uploadserver-ca"  # noqa: S105 - a name
"""The CA that signs every upload server's serving certificate (tls.crt, tls.key)."""
SERVER_CA_BUNDLE_CONFIGMAP = "cdi-uploadserver-ca-bundle"
"""ca-bundle.crt: what the proxy trusts when it dials an upload server."""
CLIENT_CA_SECRET = "cdi-uploadserver-client-ca"  # noqa: S105 - a name
"""The CA of the proxy's client certificate (tls.crt, tls.key)."""
PROXY_CLIENT_CERT_SECRET = "cdi-uploadproxy-client-cert"  # noqa: S105 - a name
"""The proxy's client certificate (tls.crt, tls.key, CN = CLIENT_COMMON_NAME)."""

# The token API's key (created by cdi-apiserver on first start).
SIGNING_KEY_SECRET = "cdi-api-signing-key"  # noqa: S105 - a name
"""id_rsa (private PEM) and id_rsa.pub: only the API server reads this Secret."""
PUBLIC_KEY_CONFIGMAP = "cdi-api-public-key"
"""id_rsa.pub: what the proxy verifies tokens with (it may not read the Secret)."""

# The proxy's Service, which the controller publishes in CDIConfig status.uploadProxyURL
# unless spec.uploadProxyURLOverride is set: https://<a node's InternalIP>:<nodePort>
# for a NodePort Service, else https://<service>.<namespace>.svc.
PROXY_SERVICE = "cdi-uploadproxy"

# PVC annotations the proxy reads (written by the controller, CDI's keys) are in
# cdicontract.annotations: POD_READY, POD_PHASE, UPLOAD_TARGET, UPLOAD_POD_NAME; the owner
# labels every transfer's objects carry are OWNER_UID_LABEL and TRANSFER_LABEL there.

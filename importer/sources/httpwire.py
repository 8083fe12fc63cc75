"""Pure pieces of HTTP handling for the HTTP source: header lines, ranges, validators,
status codes, redirects' credential rules, CA bundles. No network I/O here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, TransientSourceError

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def parse_header_line(line: str) -> tuple[str, str]:
    """Split a "Name: value" line (CDI's extraHeaders format); INVALID_CONFIG if malformed.

    The message names the header but never quotes the value: secretExtraHeaders carry tokens.
    """
    name, sep, value = line.partition(":")
    name = name.strip()
    value = value.strip()
    if not sep or not _TOKEN.match(name):
        raise ImportFailure(
            Reason.INVALID_CONFIG, "malformed extra header: expected a 'Name: value' line"
        )
    if any(c in value for c in "\r\n\0"):
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"extra header {name!r} has a control character in its value"
        )
    return name, value


def ca_bundle_from_dir(cert_dir: str, into: str) -> str | None:
    """Concatenate the PEM certificates found in `cert_dir` into the file `into`.

    CDI mounts the certConfigMap at the cert dir and, like CDI, we take every key
    (file) that holds a PEM certificate, whatever its name (.crt, .pem, ca.bundle...).
    Hidden entries are the ConfigMap volume's own bookkeeping (`..data`) and skipped.
    Returns `into`, or None when the directory is missing or holds no certificate.
    """
    directory = Path(cert_dir)
    if not directory.is_dir():
        return None
    pems: list[bytes] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        data = entry.read_bytes()
        if _PEM_CERT in data:
            pems.append(data if data.endswith(b"\n") else data + b"\n")
    if not pems:
        return None
    tmp = f"{into}.tmp"
    with open(tmp, "wb") as out:
        for data in pems:
            out.write(data)
    os.replace(tmp, into)
    return into


def ca_bundle_with_dir(base: str | None, extra_dir: str, into: str) -> str | None:
    """`base` (a bundle path; None: the default trust store requests uses) plus the PEM
    certificates of `extra_dir`, written to `into`; `base` unchanged when `extra_dir`
    holds none. How the proxy's CA (CDIConfig importProxy.trustedCAProxy, mounted at
    /proxycerts) is trusted beside the others, as CDI's importer adds it to its pool."""
    extra = ca_bundle_from_dir(extra_dir, f"{into}.extra")
    if extra is None:
        return base
    if base is None:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH

        base = str(DEFAULT_CA_BUNDLE_PATH)
    tmp = f"{into}.tmp"
    with open(tmp, "wb") as out:
        for part in (base, extra):
            data = Path(part).read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    os.replace(tmp, into)
    os.unlink(extra)
    return into


def redact_url(url: str) -> str:
    """The URL for messages: no userinfo, and the query (presigned signatures) elided."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1", a netloc with characters NFKC turns into '@' or ':'
        return "(malformed URL)"
    netloc = parts.netloc.rpartition("@")[2]
    text = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return text + ("?..." if parts.query else "")


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes START-END/TOTAL` -> (start, end, total or None for `*`); None if unparsable."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return start, end, total


def content_length(headers: Mapping[str, str]) -> int | None:
    """The body length the server promises, or None (chunked, missing, or nonsense)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        n = int(headers.get("Content-Length", ""))
    except ValueError:
        return None
    return n if n >= 0 else None


def validator_of(headers: Mapping[str, str]) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (weak ETags are not allowed)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def auth_allowed(origin: SplitResult, target: SplitResult) -> bool:
    """Whether credentials given for `origin` may go to `target` (requests' own rule)."""
    if origin.hostname != target.hostname:
        return False
    if (origin.scheme, origin.port) == (target.scheme, target.port):
        return True
    # The one cross-scheme hop allowed: http -> https upgrade on the default ports.
    return (
        origin.scheme == "http"
        and target.scheme == "https"
        and origin.port in (None, 80)
        and target.port in (None, 443)
    )


def failure_for_status(status: int, where: str) -> ImportFailure | None:
    """Map an HTTP status to the failure it means, or None for a 2xx."""
    if 200 <= status < 300:
        return None
    if status in (404, 410):
        return ImportFailure(Reason.SOURCE_NOT_FOUND, f"{where}: HTTP {status}, no such object")
    if status == 401:
        return ImportFailure(
            Reason.UNAUTHORIZED, f"{where}: HTTP 401, credentials missing or refused"
        )
    if status == 407:
        return ImportFailure(Reason.UNAUTHORIZED, f"{where}: HTTP 407, the proxy wants credentials")
    if status == 403:
        return ImportFailure(Reason.FORBIDDEN, f"{where}: HTTP 403, access forbidden")
    if status in (408, 429) or status >= 500:
        return TransientSourceError(f"{where}: HTTP {status}", Reason.SERVER_ERROR)
    return ImportFailure(Reason.SERVER_ERROR, f"{where}: unexpected HTTP {status}")

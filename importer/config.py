"""The importer's configuration, parsed once at the edge from the command line and CDI's env vars.

Every option can come from a flag or from the environment variable CDI's importer pod
sets, so the same program runs unchanged as a CLI and as the importer pod. Flags win
over the environment. Nothing deeper in the importer reads `os.environ`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cdicontract import envvars as env
from cdicontract import importpod, sizes
from cdicontract.reasons import Reason
from cdicontract.sourcekinds import SourceKind
from importer.checksum import Checksum
from importer.errors import ImportFailure
from importer.transferspec import DEFAULT_STALL_TIMEOUT, ContentType, TransferSpec

DEFAULT_OVERHEAD = float(sizes.DEFAULT_OVERHEAD)
__all__ = ["SUPPORTED_SOURCES", "ContentType", "ImporterConfig", "MetricsAddr", "parse"]


SUPPORTED_SOURCES = (
    SourceKind.HTTP,
    SourceKind.S3,
    SourceKind.GCS,
    SourceKind.REGISTRY,
    SourceKind.BLANK,
)
"""The kinds this program pulls on its own (an upload body is fed in by the upload server)."""


@dataclass(frozen=True)
class MetricsAddr:
    host: str
    port: int


@dataclass(frozen=True)
class ImporterConfig:
    source: SourceKind
    endpoint: str
    dest: str
    content_type: ContentType = ContentType.KUBEVIRT
    size: int | None = None
    checksum: Checksum | None = None
    cert_dir: str | None = None
    proxy_cert_dir: str | None = None
    """CDIConfig importProxy.trustedCAProxy's certificates, trusted besides the others."""
    insecure_tls: bool = False
    extra_headers: tuple[str, ...] = ()
    secret_headers: tuple[str, ...] = ()
    """From `secretExtraHeaders`: sent to the origin only, never after a redirect elsewhere."""
    access_key: str | None = None
    secret_key: str | None = None
    gcs_credentials: str | None = None
    """A GCS service-account key file (GOOGLE_APPLICATION_CREDENTIALS); None: anonymous."""
    gcs_emulator_host: str | None = None
    """STORAGE_EMULATOR_HOST: the endpoint gs:// URLs go to instead of Google's."""
    filesystem_overhead: float = DEFAULT_OVERHEAD
    preallocation: bool = False
    termination_log: str | None = None
    progress_bar: bool = False
    metrics: MetricsAddr | None = None
    owner_uid: str = ""
    scratch_dir: str | None = None
    scratch_volume_only: bool = False
    """In a pod: scratch only on the mounted scratch volume (TransferSpec)."""
    insecure_registries: frozenset[str] = frozenset()
    platform_arch: str | None = None
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    range_block: int = 8 << 20
    deny_local_addresses: bool = False
    """Refuse sources on loopback and link-local addresses (CDIConfig feature gate)."""
    """Size of the pinned view's ranged reads (and of its cache blocks, two of them kept)."""

    def transfer_spec(self) -> TransferSpec:
        """The part of the configuration the pipeline reads."""
        return TransferSpec(
            dest=self.dest,
            content_type=self.content_type,
            requested_size=self.size,
            filesystem_overhead=self.filesystem_overhead,
            checksum=self.checksum,
            preallocation=self.preallocation,
            scratch_dir=self.scratch_dir,
            scratch_volume_only=self.scratch_volume_only,
            stall_timeout=self.stall_timeout,
        )

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line or a message."""
        values = [self.secret_key or "", self.access_key or ""]
        values += [
            h.partition(":")[2].strip() for h in (*self.extra_headers, *self.secret_headers)
        ]
        return tuple(v for v in values if len(v) >= 4)


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _parse_metrics(text: str) -> MetricsAddr | None:
    if text.strip().lower() in {"", "off", "none", "false"}:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"--metrics-addr must be HOST:PORT, got {text!r}"
        )
    return MetricsAddr(host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - a pod's port


def _read_secret_dir(path: str) -> tuple[str | None, str | None]:
    def read(name: str) -> str | None:
        f = Path(path) / name
        try:
            return f.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ImportFailure(
                Reason.INVALID_CONFIG, f"cannot read {name} in secret dir {path}: {e.strerror}"
            ) from e

    return read("accessKeyId"), read("secretKey")


def _read_secret_headers(directory: str) -> list[str]:
    """Header lines from mounted Secrets: one sub-directory per Secret, one file per line.

    Kubernetes mounts each Secret key as a file next to hidden `..data` links; those and
    any other dot-files are skipped. Order is stable (by Secret, then key).
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    lines: list[str] = []
    for secret in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        files = [secret] if secret.is_file() else sorted(secret.iterdir())
        for f in files:
            if f.name.startswith(".") or not f.is_file():
                continue
            try:
                text = f.read_text().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise ImportFailure(
                    Reason.INVALID_CONFIG, f"cannot read extra-header secret file {f.name}"
                ) from e
            lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ImportFailures (reported like any other) instead of
    an exit that would leave the pod without a termination report."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        head, sep, rest = message.partition(":")
        if head == "unrecognized arguments":
            # The values may be secrets (a header, a key): name the options only.
            flags = [w.split("=", 1)[0] for w in rest.split() if w.startswith("-")]
            message = f"{head}{sep} {' '.join(flags) or '(values not shown)'}"
        raise ImportFailure(Reason.INVALID_CONFIG, f"bad command line: {message[:300]}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cdi-importer",
        description="Import a disk image into a raw file, block device or directory. "
        "Every option may also come from CDI's importer environment variables.",
    )
    p.add_argument("--source", help=f"http, s3, gcs, registry or blank (env {env.SOURCE})")
    p.add_argument("--endpoint", help=f"URL of the image (env {env.ENDPOINT})")
    p.add_argument("--dest", help="target file, block device, or directory for archives")
    p.add_argument("--content-type", help="kubevirt (a disk image) or archive (a tar)")
    p.add_argument("--size", help="requested volume size, bytes or a quantity like 10Gi")
    p.add_argument(
        "--checksum", help="ALG:HEX over the bytes as served (md5, sha1, sha256, sha512)"
    )
    p.add_argument("--cert-dir", help="directory with a CA bundle for HTTPS")
    p.add_argument("--insecure-tls", action="store_true", default=None)
    p.add_argument("--extra-header", action="append", default=None, metavar="'Name: value'")
    p.add_argument(
        "--secret-headers-dir",
        help="directory of mounted Secrets whose values are header lines, sent to the origin "
        f"only (env {importpod.SECRET_EXTRA_HEADERS_DIR})",
    )
    p.add_argument("--secret-dir", help="directory with files accessKeyId and secretKey")
    p.add_argument(
        "--gcs-credentials",
        help=f"GCS service-account key file (env {env.GOOGLE_CREDENTIALS}); anonymous without",
    )
    p.add_argument("--filesystem-overhead", help="fraction reserved for the filesystem (0.06)")
    p.add_argument("--preallocation", action="store_true", default=None)
    p.add_argument("--termination-log", help="where the JSON result goes")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--metrics-addr", help="HOST:PORT of the Prometheus endpoint (HTTPS)")
    p.add_argument("--scratch-dir", help="where a download goes when conversion needs one")
    p.add_argument("--owner-uid", help="ownerUID label of the progress metric")
    p.add_argument("--stall-timeout", type=float, default=None, help="seconds without progress")
    p.add_argument(
        "--deny-local-addresses",
        action="store_true",
        default=None,
        help="refuse sources (and redirect hops) on loopback or link-local addresses "
        f"(env {env.DENY_LOCAL_ADDRESSES})",
    )
    p.add_argument(
        "--range-block-size",
        default=None,
        help="bytes per ranged read when converting without scratch (default 8Mi; larger "
        "for high-latency object stores, two blocks are cached)",
    )
    return p


def parse_quantity(text: str) -> int:
    """A Kubernetes quantity in bytes; a bad one is INVALID_CONFIG."""
    try:
        return sizes.parse_quantity(text)
    except sizes.SizeError as e:
        raise ImportFailure(Reason.INVALID_CONFIG, str(e)) from e


def parse_overhead(text: str) -> float:
    """A filesystem overhead in [0, 1); anything else is INVALID_CONFIG."""
    try:
        return sizes.parse_overhead(text)
    except sizes.SizeError as e:
        raise ImportFailure(Reason.INVALID_CONFIG, str(e)) from e


def _default_dest(content_type: ContentType, environ: Mapping[str, str]) -> str:
    if environ.get(env.DEST):
        return environ[env.DEST]
    if content_type is ContentType.ARCHIVE:
        return env.DEFAULT_DATA_DIR
    if Path(env.DEFAULT_BLOCK_DEST).exists():
        return env.DEFAULT_BLOCK_DEST
    if Path(env.DEFAULT_DATA_DIR).is_dir():
        return env.DEFAULT_FILE_DEST
    raise ImportFailure(Reason.INVALID_CONFIG, "no --dest given and no /data or block volume here")


def default_termination_log(environ: Mapping[str, str]) -> str | None:
    """Where the report goes when no flag says: the env var, else the kubelet's default path
    (a pod's `terminationMessagePath`) when it is writable here."""
    if environ.get(env.TERMINATION_LOG):
        return environ[env.TERMINATION_LOG]
    path = env.DEFAULT_TERMINATION_LOG
    return path if os.access(path, os.W_OK) else None


MIN_RANGE_BLOCK = 4096
MAX_RANGE_BLOCK = 64 << 20


def _range_block(text: str | None) -> int:
    if text is None:
        return 8 << 20
    size = parse_quantity(text)
    if not MIN_RANGE_BLOCK <= size <= MAX_RANGE_BLOCK:
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            f"--range-block-size must be between {MIN_RANGE_BLOCK} and {MAX_RANGE_BLOCK} bytes",
        )
    return size


def parse(argv: Sequence[str], environ: Mapping[str, str], *, isatty: bool) -> ImporterConfig:
    """Build the frozen config; raises ImportFailure(INVALID_CONFIG) with a precise message."""
    a = build_parser().parse_args(list(argv))

    def pick(flag: object, var: str, default: str = "") -> str:
        if flag is not None:
            return str(flag)
        return environ.get(var, default)

    source_text = pick(a.source, env.SOURCE, SourceKind.HTTP.value).strip().lower() or "http"
    source = next((k for k in SUPPORTED_SOURCES if k.value == source_text), None)
    if source is None:
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            f"unsupported source {source_text[:32]!r} ({', '.join(SUPPORTED_SOURCES)})",
        )
    ct_text = pick(a.content_type, env.CONTENT_TYPE, "kubevirt").strip().lower() or "kubevirt"
    try:
        content_type = ContentType(ct_text)
    except ValueError:
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"unsupported content type {ct_text!r} (kubevirt, archive)"
        ) from None
    if content_type is ContentType.ARCHIVE and source in (SourceKind.BLANK, SourceKind.REGISTRY):
        raise ImportFailure(
            Reason.INVALID_CONFIG, f"content type archive is not supported for source {source}"
        )

    endpoint = pick(a.endpoint, env.ENDPOINT).strip()
    if source is not SourceKind.BLANK and not endpoint:
        raise ImportFailure(Reason.INVALID_CONFIG, f"--endpoint is required for source {source}")

    size_text = pick(a.size, env.IMAGE_SIZE).strip()
    size = parse_quantity(size_text) if size_text else None

    checksum_text = pick(a.checksum, env.CHECKSUM).strip()
    checksum = Checksum.parse(checksum_text) if checksum_text else None

    headers = list(a.extra_header or [])
    if a.extra_header is None:
        numbered = sorted(
            (k for k in environ if k.startswith(env.EXTRA_HEADER_PREFIX)),
            key=lambda k: (len(k), k),
        )
        headers = [environ[k] for k in numbered]
    secret_headers: list[str] = []
    secret_headers_dir = pick(a.secret_headers_dir, importpod.SECRET_EXTRA_HEADERS_DIR)
    if secret_headers_dir:
        secret_headers = _read_secret_headers(secret_headers_dir)
    for h in (*headers, *secret_headers):
        name, sep, _ = h.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ImportFailure(
                Reason.INVALID_CONFIG, f"extra header must be 'Name: value', got {name[:40]!r}"
            )

    access_key = environ.get(env.ACCESS_KEY_ID) or None
    secret_key = environ.get(env.SECRET_KEY) or None
    secret_dir = pick(a.secret_dir, env.SECRET_DIR).strip()
    if secret_dir:
        access_key, secret_key = _read_secret_dir(secret_dir)

    overhead_text = pick(a.filesystem_overhead, env.FILESYSTEM_OVERHEAD).strip()
    overhead = parse_overhead(overhead_text) if overhead_text else DEFAULT_OVERHEAD

    in_pod = bool(environ.get("KUBERNETES_SERVICE_HOST")) or bool(environ.get(env.OWNER_UID))
    metrics_text = pick(a.metrics_addr, env.METRICS_ADDR)
    if metrics_text:
        metrics = _parse_metrics(metrics_text)
    else:
        metrics = MetricsAddr("0.0.0.0", env.METRICS_PORT) if in_pod else None  # noqa: S104

    cert_dir = pick(a.cert_dir, env.CERT_DIR).strip() or None
    if cert_dir and not Path(cert_dir).is_dir():
        cert_dir = None  # CDI sets the variable even when no ConfigMap is mounted
    proxy_cert_dir = environ.get(env.PROXY_CERT_DIR, "").strip() or None
    if proxy_cert_dir and not Path(proxy_cert_dir).is_dir():
        proxy_cert_dir = None

    scratch = pick(a.scratch_dir, env.SCRATCH_DIR).strip() or None
    if scratch is None and Path(env.DEFAULT_SCRATCH_DIR).is_dir():
        scratch = env.DEFAULT_SCRATCH_DIR

    registries = frozenset(
        r.strip() for r in environ.get(env.INSECURE_REGISTRIES, "").split(",") if r.strip()
    )
    dest = a.dest or _default_dest(content_type, environ)
    progress = a.progress if a.progress is not None else isatty

    return ImporterConfig(
        source=source,
        endpoint=endpoint,
        dest=dest,
        content_type=content_type,
        size=size,
        checksum=checksum,
        cert_dir=cert_dir,
        proxy_cert_dir=proxy_cert_dir,
        insecure_tls=a.insecure_tls or _truthy(environ.get(env.INSECURE_TLS, "")),
        extra_headers=tuple(headers),
        secret_headers=tuple(secret_headers),
        access_key=access_key,
        secret_key=secret_key,
        gcs_credentials=pick(a.gcs_credentials, env.GOOGLE_CREDENTIALS).strip() or None,
        gcs_emulator_host=environ.get(env.STORAGE_EMULATOR_HOST, "").strip() or None,
        filesystem_overhead=overhead,
        preallocation=a.preallocation or _truthy(environ.get(env.PREALLOCATION, "")),
        termination_log=a.termination_log or default_termination_log(environ),
        progress_bar=progress,
        metrics=metrics,
        owner_uid=pick(a.owner_uid, env.OWNER_UID),
        scratch_dir=scratch,
        scratch_volume_only=in_pod,
        insecure_registries=registries,
        platform_arch=environ.get(env.PLATFORM_ARCH) or None,
        stall_timeout=a.stall_timeout if a.stall_timeout is not None else DEFAULT_STALL_TIMEOUT,
        range_block=_range_block(a.range_block_size),
        deny_local_addresses=bool(a.deny_local_addresses)
        or _truthy(environ.get(env.DENY_LOCAL_ADDRESSES, "")),
    )

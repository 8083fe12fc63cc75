"""The upload server's configuration, parsed once from the pod's environment (and flags).

The controller sets the ENV_* variables of cdicontract.upload; flags exist for the
address and ports only, so tests and humans can run the server on free local ports.
Nothing deeper in the server reads `os.environ`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdicontract import clone, envvars, sizes
from cdicontract import upload as contract
from importer.transferspec import DEFAULT_OVERHEAD, ContentType

DEFAULT_PAUSE_TIMEOUT = 600.0
DEFAULT_READ_TIMEOUT = 60.0
"""A connection that sends nothing for this long (while we wait for bytes) is dropped."""


class ConfigError(ValueError):
    """A bad value in the environment or on the command line; the message names it."""


@dataclass(frozen=True)
class ServerConfig:
    dest: str
    content_type: ContentType = ContentType.KUBEVIRT
    tls_dir: str = contract.TLS_DIR
    client_name: str = contract.CLIENT_COMMON_NAME
    image_size: int | None = None
    filesystem_overhead: float = DEFAULT_OVERHEAD
    preallocation: bool = False
    owner_uid: str = ""
    termination_log: str | None = envvars.DEFAULT_TERMINATION_LOG
    pause_timeout: float = DEFAULT_PAUSE_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    host: str = "0.0.0.0"  # noqa: S104 - a pod's port, reached through its Service
    port: int = contract.UPLOAD_SERVER_PORT
    metrics_port: int | None = contract.UPLOAD_SERVER_METRICS_PORT
    keepalive_after: float = contract.KEEPALIVE_AFTER_SECONDS
    keepalive_interval: float = contract.KEEPALIVE_INTERVAL_SECONDS
    mode: str = clone.SERVER_MODE_UPLOAD
    """upload (the proxy's uploads) or clone (one cloner's stream, `CLONE_PATH` only)."""

    @property
    def is_clone(self) -> bool:
        return self.mode == clone.SERVER_MODE_CLONE

    @property
    def tls_cert(self) -> str:
        return str(Path(self.tls_dir) / "tls.crt")

    @property
    def tls_key(self) -> str:
        return str(Path(self.tls_dir) / "tls.key")

    @property
    def client_ca(self) -> str:
        return str(Path(self.tls_dir) / "ca.crt")

    def archive_dir(self) -> str:
        """Where an archive is extracted: the destination if it is a directory, else its parent."""
        return self.dest if os.path.isdir(self.dest) else os.path.dirname(self.dest) or "."


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "t", "true", "yes", "on"}


def _seconds(name: str, text: str, default: float) -> float:
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text[:40]!r}") from None
    if not 0 < value < 10**7:
        raise ConfigError(f"{name} must be positive, got {text[:40]!r}")
    return value


def _default_dest(content_type: ContentType, environ: Mapping[str, str]) -> str:
    given = environ.get(contract.ENV_DEST, "").strip()
    if given:
        return given
    if content_type is ContentType.ARCHIVE:
        return envvars.DEFAULT_DATA_DIR
    if Path(envvars.DEFAULT_BLOCK_DEST).exists():
        return envvars.DEFAULT_BLOCK_DEST
    return envvars.DEFAULT_FILE_DEST


def _port(text: str | None, default: int | None) -> int | None:
    if text is None:
        return default
    if text.strip().lower() in {"off", "none"}:
        return None
    if not text.isdigit() or int(text) > 65535:
        raise ConfigError(f"port must be 0..65535, got {text[:20]!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cdi-uploadserver",
        description="Receive one upload over mutual TLS and write it into the volume. "
        "Configured by the UPLOADSERVER_* environment the controller sets.",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--port", default=None, help=f"upload port (default {contract.UPLOAD_SERVER_PORT})"
    )
    p.add_argument(
        "--metrics-port",
        default=None,
        help=f"progress metrics port, or 'off' (default {contract.UPLOAD_SERVER_METRICS_PORT})",
    )
    return p


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
    """The configuration, or ConfigError naming the bad value."""
    a = build_parser().parse_args(list(argv))
    mode = environ.get(clone.ENV_SERVER_MODE, "").strip().lower() or clone.SERVER_MODE_UPLOAD
    if mode not in (clone.SERVER_MODE_UPLOAD, clone.SERVER_MODE_CLONE):
        raise ConfigError(f"{clone.ENV_SERVER_MODE} must be upload or clone, got {mode[:40]!r}")
    client_name = environ.get(contract.ENV_CLIENT_NAME, "").strip()
    if mode == clone.SERVER_MODE_CLONE and client_name in ("", contract.CLIENT_COMMON_NAME):
        # Else the upload proxy's certificate could write into a clone target.
        raise ConfigError(
            f"clone mode needs {contract.ENV_CLIENT_NAME}: the cloner's certificate name"
        )
    content_text = environ.get(contract.ENV_CONTENT_TYPE, "").strip().lower() or "kubevirt"
    try:
        content_type = ContentType(content_text)
    except ValueError:
        raise ConfigError(
            f"{contract.ENV_CONTENT_TYPE} must be kubevirt or archive, got {content_text[:40]!r}"
        ) from None
    size_text = environ.get(contract.ENV_IMAGE_SIZE, "").strip()
    overhead_text = environ.get(contract.ENV_FILESYSTEM_OVERHEAD, "").strip()
    try:
        image_size = sizes.parse_quantity(size_text) if size_text else None
    except sizes.SizeError as e:
        raise ConfigError(f"{contract.ENV_IMAGE_SIZE}: {e}") from e
    try:
        overhead = sizes.parse_overhead(overhead_text) if overhead_text else DEFAULT_OVERHEAD
    except sizes.SizeError as e:
        raise ConfigError(f"{contract.ENV_FILESYSTEM_OVERHEAD}: {e}") from e
    termination_log = environ.get(contract.ENV_TERMINATION_LOG, "").strip()
    host = a.host if a.host is not None else ServerConfig.host
    port = _port(a.port, contract.UPLOAD_SERVER_PORT)
    if port is None:
        raise ConfigError("the upload port cannot be off")
    return ServerConfig(
        dest=_default_dest(content_type, environ),
        content_type=content_type,
        tls_dir=environ.get(contract.ENV_TLS_DIR, "").strip() or contract.TLS_DIR,
        client_name=client_name or contract.CLIENT_COMMON_NAME,
        image_size=image_size,
        filesystem_overhead=overhead,
        preallocation=_truthy(environ.get(contract.ENV_PREALLOCATION, "")),
        owner_uid=environ.get(contract.ENV_OWNER_UID, "").strip(),
        termination_log=termination_log or envvars.DEFAULT_TERMINATION_LOG,
        pause_timeout=_seconds(
            contract.ENV_PAUSE_TIMEOUT,
            environ.get(contract.ENV_PAUSE_TIMEOUT, ""),
            DEFAULT_PAUSE_TIMEOUT,
        ),
        host=host,
        port=port,
        metrics_port=_port(a.metrics_port, contract.UPLOAD_SERVER_METRICS_PORT),
        mode=mode,
    )

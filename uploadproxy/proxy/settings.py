"""The proxy's configuration: flags, each with an environment variable, parsed once here.

Defaults fit the Deployment in deploy/uploadproxy.yaml, so the container needs no
arguments. The token key and the mutual-TLS credentials are not files but objects read
through the API in the proxy's namespace (see `credentials`); only the optional serving
certificate is a file (CDI's SERVER_CERT_FILE / SERVER_KEY_FILE names).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdicontract import upload

CERTS = Path("/var/run/certs/cdi-uploadproxy-server-cert")
DEFAULT_URL_TEMPLATE = "https://{service}.{namespace}.svc:443{path}"
MAX_CHUNK = 1 << 20


class SettingsError(ValueError):
    """A flag or variable has a value the proxy cannot run with."""


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, int]
    metrics_listen: tuple[str, int] | None
    """Plain HTTP /metrics and /healthz, apart from the port users reach."""
    plain_http: bool
    """Serve uploads without TLS (only behind something that terminates it)."""
    tls_cert_file: Path
    tls_key_file: Path
    """The serving certificate; when absent the proxy makes a self-signed one."""
    namespace: str
    """Where the public key ConfigMap, the CA bundle and the client Secret live."""
    url_template: str
    connect_to: tuple[str, int] | None
    """Dial this address for every upload server (the URL's name is still verified)."""
    kubeconfig: str | None
    ready_timeout: float
    chunk_size: int
    credentials_max_age: float
    credentials_min_refresh: float
    upstream_connect_timeout: float
    upstream_timeout: float
    log_level: str

    def upload_url(self, *, namespace: str, pvc: str, path: str) -> str:
        return self.url_template.format(service=upload.upload_service_name(pvc),
                                        namespace=namespace, pvc=pvc, path=path)


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"not an address (host:port or :port): {text!r}")
    # An empty host is every interface of the pod's own network namespace.
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


def _positive(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {text!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {text!r}")
    return value


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def e(name: str, default: str) -> str:
        return env.get(name) or default

    p = argparse.ArgumentParser(
        prog="cdi-uploadproxy",
        description="Verify upload tokens and stream uploads to per-PVC upload servers.",
    )
    p.add_argument("--listen", default=e("UPLOADPROXY_LISTEN", ":8443"),
                   help="uploads and /healthz [UPLOADPROXY_LISTEN, default :8443]")
    p.add_argument("--metrics-listen", default=e("UPLOADPROXY_METRICS_LISTEN", ":8080"),
                   help="plain-HTTP /metrics and /healthz; 'off' for none "
                        "[UPLOADPROXY_METRICS_LISTEN, default :8080]")
    p.add_argument("--plain-http", action="store_true",
                   default=e("UPLOADPROXY_PLAIN_HTTP", "") in ("1", "true"),
                   help="serve uploads over plain HTTP [UPLOADPROXY_PLAIN_HTTP=true]")
    p.add_argument("--tls-cert-file", default=e("SERVER_CERT_FILE", str(CERTS / "tls.crt")),
                   help="serving certificate; self-signed when absent [SERVER_CERT_FILE]")
    p.add_argument("--tls-key-file", default=e("SERVER_KEY_FILE", str(CERTS / "tls.key")),
                   help="its key [SERVER_KEY_FILE]")
    p.add_argument("--namespace", default=e("POD_NAMESPACE", e("CDI_NAMESPACE", "")),
                   help="namespace of the key and certificate objects "
                        "[POD_NAMESPACE or CDI_NAMESPACE]")
    p.add_argument("--upload-url-template",
                   default=e("UPLOAD_URL_TEMPLATE", DEFAULT_URL_TEMPLATE),
                   help="where a PVC's upload server is; fields {service} {namespace} {pvc} "
                        f"{{path}} [UPLOAD_URL_TEMPLATE, default {DEFAULT_URL_TEMPLATE}]")
    p.add_argument("--connect-to", default=e("UPLOADPROXY_CONNECT_TO", ""),
                   help="HOST:PORT to dial for every upload server, as curl --connect-to "
                        "(tests, debugging) [UPLOADPROXY_CONNECT_TO]")
    p.add_argument("--kubeconfig", default=env.get("KUBECONFIG") or None,
                   help="default: the in-cluster service account [KUBECONFIG]")
    p.add_argument("--ready-timeout", default=e("UPLOADPROXY_READY_TIMEOUT", "10"),
                   help="seconds to wait for the upload server to be ready (CDI: 10)")
    p.add_argument("--chunk-size", default=e("UPLOADPROXY_CHUNK_SIZE", str(256 * 1024)),
                   help="bytes read from the client per write upstream "
                        f"(at most {MAX_CHUNK}; 256 KiB costs half the CPU of 64 KiB)")
    p.add_argument("--credentials-max-age", default=e("UPLOADPROXY_CREDENTIALS_MAX_AGE", "30"),
                   help="seconds a read key or certificate is used before reading it again")
    p.add_argument("--credentials-min-refresh",
                   default=e("UPLOADPROXY_CREDENTIALS_MIN_REFRESH", "5"),
                   help="least seconds between re-reads forced by a failed verification")
    p.add_argument("--upstream-connect-timeout",
                   default=e("UPLOADPROXY_UPSTREAM_CONNECT_TIMEOUT", "10"))
    p.add_argument("--upstream-timeout", default=e("UPLOADPROXY_UPSTREAM_TIMEOUT", "86400"),
                   help="a whole upload, seconds (CDI: 24 h)")
    p.add_argument("--log-level", default=e("UPLOADPROXY_LOG_LEVEL", "INFO"))
    a = p.parse_args(argv)

    template = str(a.upload_url_template)
    try:
        template.format(service="s", namespace="n", pvc="p", path="/x")
    except (KeyError, IndexError, ValueError) as exc:
        raise SettingsError(f"bad --upload-url-template: {exc!r}") from None
    if not template.endswith("{path}"):
        raise SettingsError("--upload-url-template must end with {path}")
    if not template.startswith("https://"):
        raise SettingsError("--upload-url-template must be https:// (mutual TLS)")
    try:
        chunk = int(a.chunk_size)
    except ValueError:
        raise SettingsError(f"--chunk-size must be an integer, got {a.chunk_size!r}") from None
    if not 1024 <= chunk <= MAX_CHUNK:
        raise SettingsError(f"--chunk-size must be between 1024 and {MAX_CHUNK}")
    namespace = str(a.namespace)
    if not upload.is_dns_label(namespace):
        raise SettingsError("--namespace (or POD_NAMESPACE) must name the proxy's namespace"
                            if not namespace else f"--namespace {namespace!r} is not a name")
    level = str(a.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"--log-level {a.log_level!r}: DEBUG, INFO, WARNING or ERROR")

    return Settings(
        listen=address(a.listen),
        metrics_listen=None if a.metrics_listen == "off" else address(a.metrics_listen),
        plain_http=bool(a.plain_http),
        tls_cert_file=Path(a.tls_cert_file),
        tls_key_file=Path(a.tls_key_file),
        namespace=namespace,
        url_template=template,
        connect_to=address(a.connect_to) if a.connect_to else None,
        kubeconfig=a.kubeconfig,
        ready_timeout=_positive("--ready-timeout", a.ready_timeout),
        chunk_size=chunk,
        credentials_max_age=_positive("--credentials-max-age", a.credentials_max_age),
        credentials_min_refresh=_positive("--credentials-min-refresh",
                                          a.credentials_min_refresh),
        upstream_connect_timeout=_positive("--upstream-connect-timeout",
                                           a.upstream_connect_timeout),
        upstream_timeout=_positive("--upstream-timeout", a.upstream_timeout),
        log_level=level,
    )

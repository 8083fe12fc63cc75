"""The proxy's configuration: flags, each with an environment variable, parsed once here.

Defaults are where the Deployment mounts things (CDI's paths under /var/run/certs where
CDI has them), so the container needs no arguments. Environment names follow CDI's
`UploadProxyEnvs` where it has one (SERVER_CERT_FILE, UPLOAD_CLIENT_CERT_FILE, ...).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CERTS = Path("/var/run/certs")
DEFAULT_URL_TEMPLATE = "https://{service}.{namespace}.svc:443{path}"
MAX_CHUNK = 1 << 20


class SettingsError(ValueError):
    """A flag or variable has a value the proxy cannot run with."""


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, int]
    health_listen: tuple[str, int] | None
    tls_cert_file: Path | None
    """The proxy's own serving certificate; None serves plain HTTP (behind a TLS ingress)."""
    tls_key_file: Path | None
    token_public_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    server_ca_file: Path
    url_template: str
    kubeconfig: str | None
    ready_timeout: float
    chunk_size: int
    reload_interval: float
    upstream_connect_timeout: float
    upstream_timeout: float
    log_level: str

    def upload_url(self, *, service: str, namespace: str, pvc: str, path: str) -> str:
        return self.url_template.format(service=service, namespace=namespace, pvc=pvc, path=path)


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"not an address (host:port or :port): {text!r}")
    # An empty host is every interface of the pod's own network namespace.
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
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
                   help="uploads (and /healthz) [UPLOADPROXY_LISTEN, default :8443]")
    p.add_argument("--health-listen", default=e("UPLOADPROXY_HEALTH_LISTEN", ":8080"),
                   help="plain-HTTP /healthz, /livez and /metrics for probes; 'off' for none "
                        "[UPLOADPROXY_HEALTH_LISTEN, default :8080]")
    p.add_argument("--tls-cert-file",
                   default=e("SERVER_CERT_FILE", str(CERTS / "cdi-uploadproxy-server-cert/tls.crt")),
                   help="serving certificate [SERVER_CERT_FILE]")
    p.add_argument("--tls-key-file",
                   default=e("SERVER_KEY_FILE", str(CERTS / "cdi-uploadproxy-server-cert/tls.key")),
                   help="serving key [SERVER_KEY_FILE]")
    p.add_argument("--plain-http", action="store_true",
                   default=e("UPLOADPROXY_PLAIN_HTTP", "") in ("1", "true"),
                   help="serve plain HTTP (only behind something that terminates TLS) "
                        "[UPLOADPROXY_PLAIN_HTTP=true]")
    p.add_argument("--token-public-key-file",
                   default=e("APISERVER_PUBLIC_KEY_FILE",
                             str(CERTS / "cdi-uploadproxy-signer-public/id_rsa.pub")),
                   help="PEM public key that upload tokens are signed with "
                        "[APISERVER_PUBLIC_KEY_FILE]")
    p.add_argument("--client-cert-file",
                   default=e("UPLOAD_CLIENT_CERT_FILE",
                             str(CERTS / "cdi-uploadserver-client-cert/tls.crt")),
                   help="client certificate presented to upload servers "
                        "[UPLOAD_CLIENT_CERT_FILE]")
    p.add_argument("--client-key-file",
                   default=e("UPLOAD_CLIENT_KEY_FILE",
                             str(CERTS / "cdi-uploadserver-client-cert/tls.key")),
                   help="its key [UPLOAD_CLIENT_KEY_FILE]")
    p.add_argument("--server-ca-file",
                   default=e("UPLOAD_SERVER_CA_FILE",
                             str(CERTS / "cdi-uploadserver-signer-bundle/ca-bundle.crt")),
                   help="CA bundle that signed the upload servers' certificates "
                        "[UPLOAD_SERVER_CA_FILE]")
    p.add_argument("--upload-url-template",
                   default=e("UPLOAD_URL_TEMPLATE", DEFAULT_URL_TEMPLATE),
                   help="where a PVC's upload server is; fields {service} {namespace} {pvc} "
                        f"{{path}} [UPLOAD_URL_TEMPLATE, default {DEFAULT_URL_TEMPLATE}]")
    p.add_argument("--kubeconfig", default=env.get("KUBECONFIG") or None,
                   help="default: the in-cluster service account [KUBECONFIG]")
    p.add_argument("--ready-timeout", type=float,
                   default=float(e("UPLOADPROXY_READY_TIMEOUT", "10")),
                   help="how long to wait for the upload server to be ready, seconds")
    p.add_argument("--chunk-size", type=int,
                   default=int(e("UPLOADPROXY_CHUNK_SIZE", str(64 * 1024))),
                   help=f"bytes read from the client per write upstream (at most {MAX_CHUNK})")
    p.add_argument("--reload-interval", type=float,
                   default=float(e("UPLOADPROXY_RELOAD_INTERVAL", "10")),
                   help="seconds between re-reads of the key and certificates")
    p.add_argument("--upstream-connect-timeout", type=float,
                   default=float(e("UPLOADPROXY_UPSTREAM_CONNECT_TIMEOUT", "10")))
    p.add_argument("--upstream-timeout", type=float,
                   default=float(e("UPLOADPROXY_UPSTREAM_TIMEOUT", str(24 * 3600))),
                   help="a whole upload, seconds (CDI: 24 h)")
    p.add_argument("--log-level", default=e("UPLOADPROXY_LOG_LEVEL", "INFO"))
    a = p.parse_args(argv)

    template = str(a.upload_url_template)
    try:
        template.format(service="s", namespace="n", pvc="p", path="/x")
    except (KeyError, IndexError, ValueError) as exc:
        raise SettingsError(f"bad --upload-url-template: {exc!r}") from None
    if "{path}" not in template:
        raise SettingsError("--upload-url-template must contain {path}")
    if not template.startswith("https://"):
        raise SettingsError("--upload-url-template must be https:// (mutual TLS)")
    chunk = int(a.chunk_size)
    if not 1024 <= chunk <= MAX_CHUNK:
        raise SettingsError(f"--chunk-size must be between 1024 and {MAX_CHUNK}")

    return Settings(
        listen=_addr(a.listen),
        health_listen=None if a.health_listen == "off" else _addr(a.health_listen),
        tls_cert_file=None if a.plain_http else Path(a.tls_cert_file),
        tls_key_file=None if a.plain_http else Path(a.tls_key_file),
        token_public_key_file=Path(a.token_public_key_file),
        client_cert_file=Path(a.client_cert_file),
        client_key_file=Path(a.client_key_file),
        server_ca_file=Path(a.server_ca_file),
        url_template=template,
        kubeconfig=a.kubeconfig,
        ready_timeout=_positive("--ready-timeout", a.ready_timeout),
        chunk_size=chunk,
        reload_interval=_positive("--reload-interval", a.reload_interval),
        upstream_connect_timeout=_positive("--upstream-connect-timeout",
                                           a.upstream_connect_timeout),
        upstream_timeout=_positive("--upstream-timeout", a.upstream_timeout),
        log_level=str(a.log_level).upper(),
    )

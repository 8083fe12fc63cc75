"""The key and certificates the proxy needs, read from mounted files and kept current.

Why re-read instead of failing at start: the Secrets are created by the controller,
possibly after the proxy's pod starts (`kubectl apply -k deploy/` on a fresh cluster),
and they rotate. So the proxy starts without them, says what is missing (not ready, one
log line per change, paths only), and picks them up when the kubelet writes the files.

- token public key (PEM): verifies upload tokens;
- client certificate + key, and the CA bundle that signed the upload servers'
  certificates: mutual TLS to upload servers;
- serving certificate + key (unless plain HTTP): loaded into the listening socket's
  context in place, so new connections get a rotated certificate.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("cdi-uploadproxy")


@dataclass(frozen=True)
class Paths:
    token_public_key: Path
    client_cert: Path
    client_key: Path
    server_ca: Path
    serving_cert: Path | None
    serving_key: Path | None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class Credentials:
    """Current key and TLS contexts; `reload()` re-reads the files and reports changes."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.public_key: bytes | None = None
        self.client_ssl: ssl.SSLContext | None = None
        self.serving_ssl: ssl.SSLContext | None = None
        if paths.serving_cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self.serving_ssl = ctx
        self._seen: dict[str, tuple[bytes | None, ...]] = {}
        self._problems: dict[str, str] = {}
        self._reported: tuple[str, ...] | None = None

    @property
    def problems(self) -> list[str]:
        """Why the proxy cannot serve uploads yet; empty when it can."""
        return [self._problems[k] for k in sorted(self._problems)]

    @property
    def ready(self) -> bool:
        return not self._problems

    def reload(self) -> None:
        p = self.paths
        self._load("token", (p.token_public_key,), self._use_public_key)
        self._load("client", (p.client_cert, p.client_key, p.server_ca), self._use_client)
        if p.serving_cert is not None and p.serving_key is not None:
            self._load("serving", (p.serving_cert, p.serving_key), self._use_serving)
        now = tuple(self.problems)
        if now != self._reported:
            if now:
                log.warning("not ready: credentials missing or unusable problems=%s",
                            "; ".join(now))
            else:
                log.info("credentials loaded, ready to proxy uploads")
            self._reported = now

    def _load(self, what: str, files: tuple[Path, ...], use: Callable[[list[bytes]], None]) -> None:
        contents = tuple(_read(f) for f in files)
        if self._seen.get(what) == contents:
            return
        self._seen[what] = contents
        absent = [str(f) for f, c in zip(files, contents, strict=True) if c is None]
        if absent:
            self._problems[what] = f"{what}: no file {', '.join(absent)}"
            return
        try:
            use([c for c in contents if c is not None])
        except (ValueError, TypeError, ssl.SSLError, OSError) as exc:
            # The reason names the file and the failure, never the file's content.
            self._problems[what] = f"{what}: unusable {files[0]} ({type(exc).__name__})"
            return
        self._problems.pop(what, None)
        log.info("credentials read what=%s files=%s", what, ",".join(map(str, files)))

    def _use_public_key(self, contents: list[bytes]) -> None:
        key = serialization.load_pem_public_key(contents[0])
        if not isinstance(key, rsa.RSAPublicKey):
            raise TypeError("not an RSA public key")
        self.public_key = contents[0]

    def _use_client(self, _contents: list[bytes]) -> None:
        p = self.paths
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(p.server_ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(p.client_cert), str(p.client_key))
        self.client_ssl = ctx

    def _use_serving(self, _contents: list[bytes]) -> None:
        assert self.serving_ssl is not None
        assert self.paths.serving_cert is not None and self.paths.serving_key is not None
        self.serving_ssl.load_cert_chain(str(self.paths.serving_cert),
                                         str(self.paths.serving_key))

"""A real OCI registry for tests: Debian's docker-registry (distribution v2) on 127.0.0.1.

Fixtures (session-scoped, started on first use):
- `registry`: plain HTTP, anonymous;
- `registry_basic`: plain HTTP with htpasswd basic auth (user `alice`, password below);
- `registry_token`: plain HTTP with token auth, tokens from a tiny JWT server of ours;
- `registry_tls`: HTTPS with a certificate from a test CA.
Images are written by hand as OCI layouts (`write_oci_image`, tar and JSON writers) and
pushed with `skopeo copy`, as a CI job would.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import jwt
import pytest
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.peers.ports import free_port, stop, wait_for_port
from tests.peers.tlsca import TestCA, make_test_ca

USER = "alice"
PASSWORD = "correct horse battery staple"  # a test credential

LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


# --- image writing -----------------------------------------------------------------------

Entry = tuple[tarfile.TarInfo, "bytes | Path | None"]


def file_entry(name: str, data: bytes | Path, mode: int = 0o644) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = data.stat().st_size if isinstance(data, Path) else len(data)
    info.mode = mode
    info.uid = info.gid = 107
    return info, data


def special_entry(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755
    return info, None


def disk_entries(disk: bytes | Path, name: str = "disk.img") -> list[Entry]:
    return [special_entry("disk", tarfile.DIRTYPE), file_entry(f"disk/{name}", disk)]


def write_tar(path: Path, entries: list[Entry]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if isinstance(data, Path):
                with data.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _compress(src: Path, dst: Path, compression: str) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        if compression == "gzip":
            with gzip.GzipFile(fileobj=fout, mode="wb", compresslevel=1, mtime=0) as gz:
                shutil.copyfileobj(fin, gz, 1 << 20)
        elif compression == "zstd":
            zstandard.ZstdCompressor(level=3).copy_stream(fin, fout)
        else:
            shutil.copyfileobj(fin, fout, 1 << 20)


class OciLayout:
    """A hand-written OCI image layout directory (what `skopeo copy oci:DIR:tag` reads)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._index: list[dict[str, Any]] = []

    def add_blob_file(self, path: Path) -> tuple[str, int]:
        digest = _sha_file(path)
        dst = self.root / "blobs" / "sha256" / digest.split(":")[1]
        shutil.move(str(path), dst)
        return digest, dst.stat().st_size

    def add_blob(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest, len(data)

    def image(
        self, layers: list[list[Entry] | bytes], compression: str = "gzip", arch: str = "amd64"
    ) -> dict[str, Any]:
        """Write the layers, config and manifest; returns the manifest descriptor.

        A layer is a list of entries, or the bytes of a tar made elsewhere (a hostile one).
        """
        descs, diff_ids = [], []
        for i, entries in enumerate(layers):
            tar_path = self.root / f"layer-{uuid.uuid4().hex}-{i}.tar"
            if isinstance(entries, bytes):
                tar_path.write_bytes(entries)
            else:
                write_tar(tar_path, entries)
            diff_ids.append(_sha_file(tar_path))
            out = tar_path.with_suffix(".blob")
            _compress(tar_path, out, compression)
            tar_path.unlink()
            digest, size = self.add_blob_file(out)
            descs.append({"mediaType": LAYER_TYPES[compression], "digest": digest, "size": size})
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "config": {},
            }
        ).encode()
        cdigest, csize = self.add_blob(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cdigest,
                    "size": csize,
                },
                "layers": descs,
            }
        ).encode()
        mdigest, msize = self.add_blob(manifest)
        return {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest,
            "size": msize,
            "platform": {"architecture": arch, "os": "linux"},
        }

    def multiarch(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            }
        ).encode()
        digest, size = self.add_blob(index)
        return {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": size,
        }

    def tag(self, descriptor: dict[str, Any], tag: str) -> None:
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self._index.append(entry)
        (self.root / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": self._index})
        )


def oci_archive(layout: OciLayout, dest: Path) -> Path:
    """Pack a layout into an OCI archive file (the `oci-archive:` transport's format)."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout.root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout.root)), recursive=False)
    return dest


# --- the registry ------------------------------------------------------------------------


@dataclass
class Registry:
    host: str
    """127.0.0.1:PORT"""
    storage: Path
    ca_bundle: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def push(self, layout: OciLayout, tag: str, repo: str, *, all_arch: bool = False) -> str:
        """skopeo copy oci:LAYOUT:tag -> docker://host/repo:tag; returns the image URL."""
        # --preserve-digests: push layers as written (skopeo would gzip uncompressed ones).
        args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
        if all_arch:
            args.append("--all")
        if self.username:
            args += ["--dest-creds", f"{self.username}:{self.password}"]
        args += [f"oci:{layout.root}:{tag}", f"docker://{self.host}/{repo}:{tag}"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return f"docker://{self.host}/{repo}:{tag}"

    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":")[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _config(port: int, storage: Path, extra: str) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{extra}"
    )


@contextlib.contextmanager
def _run_registry(tmp: Path, extra_http: str = "", auth: str = "") -> Iterator[tuple[int, Path]]:
    port = free_port()
    storage = tmp / "storage"
    storage.mkdir()
    cfg = tmp / "config.yml"
    cfg.write_text(_config(port, storage, extra_http) + auth)
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, proc)
        yield port, storage
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with _run_registry(tmp_path_factory.mktemp("registry")) as (port, storage):
        yield Registry(host=f"127.0.0.1:{port}", storage=storage)


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry-basic")
    htpasswd = tmp / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    with _run_registry(tmp, auth=auth) as (port, storage):
        yield Registry(host=f"127.0.0.1:{port}", storage=storage, username=USER, password=PASSWORD)


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry-tls")
    ca: TestCA = make_test_ca(tmp / "ca")
    extra = f"  tls:\n    certificate: {ca.cert_file}\n    key: {ca.key_file}\n"
    with _run_registry(tmp, extra_http=extra) as (port, storage):
        yield Registry(
            host=f"127.0.0.1:{port}", storage=storage, ca_bundle=str(ca.ca_file), tls=True
        )


# --- token auth --------------------------------------------------------------------------


class TokenServer:
    """Issues registry JWTs (RS256, x5c header) for `alice`, as a Docker token service does."""

    SERVICE = "cdi-test-registry"
    ISSUER = "cdi-test-issuer"

    def __init__(self, tmp: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = tmp / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = server.answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if authorization != expected:
            return 401, b'{"details":"bad credentials"}'
        query = parse_qs(urlsplit(path).query)
        access = []
        for scope in query.get("scope", []):
            for one in scope.split(" "):
                kind, name, actions = one.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.ISSUER,
            "sub": USER,
            "aud": query.get("service", [""])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [x5c]})
        self.issued += 1
        return 200, json.dumps({"token": token, "expires_in": 300}).encode()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(tmp)
    auth = (
        "auth:\n  token:\n"
        f"    realm: {tokens.realm}\n"
        f"    service: {TokenServer.SERVICE}\n"
        f"    issuer: {TokenServer.ISSUER}\n"
        f"    rootcertbundle: {tokens.bundle}\n"
    )
    try:
        with _run_registry(tmp, auth=auth) as (port, storage):
            yield Registry(
                host=f"127.0.0.1:{port}", storage=storage, username=USER, password=PASSWORD
            )
    finally:
        tokens.close()

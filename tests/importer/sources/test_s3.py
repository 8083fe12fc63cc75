"""S3 source against moto in server mode: bytes, errors, TLS, resume and nbdkit random access."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.resume import ResumingReader
from importer.sources.s3 import S3Options, S3Source, parse_s3_url, reason_for_code
from tests.importer.sources.conftest import window_convert
from tests.peers.s3 import S3Server, free_port


def _sha(chunks: Any) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


@pytest.fixture(scope="module")
def raw_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 MiB raw disk with data scattered around and holes in between."""
    path = tmp_path_factory.mktemp("img") / "disk.raw"
    with path.open("wb") as f:
        f.truncate(16 << 20)
        for i in range(0, 16, 3):
            f.seek(i << 20)
            f.write(hashlib.sha256(str(i).encode()).digest() * 4096)
    return path


def _convert(raw: Path, fmt: str) -> Path:
    out = raw.with_suffix(f".{fmt}")
    # vpc rounds the size to a CHS geometry unless told to keep it.
    opts = ["-o", "force_size=on"] if fmt == "vpc" else []
    if not out.exists():
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", fmt, *opts, str(raw), str(out)], check=True
        )
    return out


# --- pure decisions ----------------------------------------------------------------------

URLS = {
    "aws": ("s3://bkt/dir/disk.qcow2", ("bkt", "dir/disk.qcow2", None)),
    "ip-port": ("http://10.1.2.3:9000/bkt/disk.img", ("bkt", "disk.img", "http://10.1.2.3:9000")),
    "https-host": (
        "https://minio.example:9000/bkt/a/b.img",
        ("bkt", "a/b.img", "https://minio.example:9000"),
    ),
    "aws-vhost": (
        "https://bkt.s3.eu-west-1.amazonaws.com/k.img",
        ("bkt", "k.img", None),
    ),
    "escaped-key": ("s3://bkt/my%20disk.img", ("bkt", "my disk.img", None)),
}


@pytest.mark.parametrize(("url", "expected"), URLS.values(), ids=URLS.keys())
def test_parses_the_urls_cdi_users_write(url: str, expected: tuple[str, str, str | None]) -> None:
    loc = parse_s3_url(url)
    assert (loc.bucket, loc.key, loc.endpoint) == expected


@pytest.mark.parametrize(
    "url", ["ftp://h/b/k", "s3://bkt", "s3://bkt/", "http://h:9000/bkt", "http://u:p@h/b/k"]
)
def test_refuses_urls_without_bucket_and_key(url: str) -> None:
    with pytest.raises(ImportFailure) as err:
        parse_s3_url(url)
    assert err.value.reason is Reason.INVALID_CONFIG
    assert "p@" not in err.value.message


CODES = {
    "no-bucket": ("NoSuchBucket", 404, Reason.BUCKET_NOT_FOUND),
    "no-key": ("NoSuchKey", 404, Reason.SOURCE_NOT_FOUND),
    "head-404": ("404", 404, Reason.SOURCE_NOT_FOUND),
    "denied": ("AccessDenied", 403, Reason.FORBIDDEN),
    "bad-key": ("InvalidAccessKeyId", 403, Reason.UNAUTHORIZED),
    "bad-secret": ("SignatureDoesNotMatch", 403, Reason.UNAUTHORIZED),
    "server": ("InternalError", 500, Reason.SERVER_ERROR),
}


@pytest.mark.parametrize(("code", "status", "reason"), CODES.values(), ids=CODES.keys())
def test_maps_s3_error_codes_to_reasons(code: str, status: int, reason: Reason) -> None:
    assert reason_for_code(code, status) is reason


# --- against moto ------------------------------------------------------------------------


def test_streams_the_object_bytes_with_credentials(s3_server: S3Server, raw_image: Path) -> None:
    qcow2 = _convert(raw_image, "qcow2")
    url = s3_server.put("images", "creds/disk.qcow2", qcow2)
    src = S3Source(url, S3Options(access_key="testing", secret_key="testing"))
    info = src.info()
    assert info.size == qcow2.stat().st_size
    assert info.supports_ranges and info.validator
    assert "testing" not in info.description
    stream = src.open()
    try:
        assert _sha(stream) == hashlib.sha256(qcow2.read_bytes()).hexdigest()
    finally:
        stream.close()
        src.close()


def test_anonymous_reads_public_object(s3_server: S3Server) -> None:
    url = s3_server.put("public", "disk.img", b"\x01" * 100_000, public=True)
    src = S3Source(url, S3Options())
    assert src.info().size == 100_000
    assert b"".join(src.open(40_000)) == b"\x01" * 60_000


MOTO = S3Options(access_key="testing", secret_key="testing")


def test_open_at_offset_reads_the_tail(s3_server: S3Server) -> None:
    data = bytes(range(256)) * 1000
    src = S3Source(s3_server.put("images", "tail", data), MOTO)
    src.info()
    assert b"".join(src.open(1234)) == data[1234:]
    assert b"".join(src.open(len(data))) == b""


def test_object_replaced_between_reads_requires_restart(s3_server: S3Server) -> None:
    url = s3_server.put("images", "changing", b"a" * 1000)
    src = S3Source(url, MOTO)
    src.info()
    s3_server.put("images", "changing", b"b" * 1000)
    with pytest.raises(RestartRequired):
        b"".join(src.open(500))


def test_missing_bucket_and_missing_key(s3_server: S3Server) -> None:
    s3_server.ensure_bucket("exists")
    with pytest.raises(ImportFailure) as err:
        S3Source(s3_server.url("no-such-bucket", "k"), MOTO).info()
    assert err.value.reason is Reason.BUCKET_NOT_FOUND
    with pytest.raises(ImportFailure) as err:
        S3Source(s3_server.url("exists", "no-such-key"), MOTO).info()
    assert err.value.reason is Reason.SOURCE_NOT_FOUND


def test_unreachable_endpoint_is_a_transient_network_error() -> None:
    src = S3Source(f"http://127.0.0.1:{free_port()}/b/k", S3Options())
    with pytest.raises(TransientSourceError) as err:
        src.info()
    assert err.value.reason is Reason.NETWORK_ERROR


def test_wrong_credentials_are_unauthorized_and_never_echoed(s3_auth_server: S3Server) -> None:
    url = s3_auth_server.put("private", "disk.img", b"secret data")
    for access, secret in [
        ("AKIANOSUCHKEY", "whatever-secret"),
        (s3_auth_server.access_key, "wrong-secret-value"),
    ]:
        with pytest.raises(ImportFailure) as err:
            S3Source(url, S3Options(access_key=access, secret_key=secret)).info()
        assert err.value.reason is Reason.UNAUTHORIZED
        assert secret not in str(err.value) and access not in str(err.value)


def test_key_without_permission_is_forbidden(s3_auth_server: S3Server) -> None:
    url = s3_auth_server.put("private", "disk.img", b"secret data")
    access, secret = s3_auth_server.extra_keys["nobody"]
    with pytest.raises(ImportFailure) as err:
        S3Source(url, S3Options(access_key=access, secret_key=secret)).info()
    assert err.value.reason is Reason.FORBIDDEN
    with pytest.raises(ImportFailure) as err:
        S3Source(url, S3Options()).info()
    assert err.value.reason is Reason.FORBIDDEN


def test_admin_key_reads_private_object(s3_auth_server: S3Server) -> None:
    url = s3_auth_server.put("private", "ok.img", b"z" * 5000)
    opts = S3Options(access_key=s3_auth_server.access_key, secret_key=s3_auth_server.secret_key)
    src = S3Source(url, opts)
    src.info()
    assert b"".join(src.open()) == b"z" * 5000


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_ca_bundle_insecure_and_untrusted(s3_tls_server: S3Server) -> None:
    data = b"tls" * 10_000
    url = s3_tls_server.put("tls", "disk.img", data)
    assert url.startswith("https://127.0.0.1:")
    src = S3Source(url, S3Options("testing", "testing", ca_bundle=s3_tls_server.ca_bundle))
    src.info()
    assert b"".join(src.open()) == data
    insecure = S3Source(url, S3Options("testing", "testing", insecure=True))
    insecure.info()
    assert b"".join(insecure.open()) == data
    with pytest.raises(ImportFailure) as err:
        S3Source(url, MOTO).info()
    assert err.value.reason is Reason.TLS_ERROR


def test_resumes_after_connection_drop(
    s3_server: S3Server, raw_image: Path, cutting_proxy: Callable[..., Any]
) -> None:
    s3_server.put("images", "drop/disk.raw", raw_image)
    proxy = cutting_proxy(s3_server.port, 3 << 20)
    src = S3Source(f"http://127.0.0.1:{proxy.port}/images/drop/disk.raw", MOTO)
    info = src.info()
    got = bytearray()
    with pytest.raises(TransientSourceError):
        for chunk in src.open():
            got += chunk
    assert 0 < len(got) < (3 << 20)
    for chunk in src.open(len(got)):
        got += chunk
    assert len(got) == info.size
    assert hashlib.sha256(got).digest() == hashlib.sha256(raw_image.read_bytes()).digest()
    assert proxy.cuts == 1


def test_s3_scheme_url_uses_the_injected_client_factory(s3_server: S3Server) -> None:
    """`s3://` goes to AWS; the factory seam lets a test point that client at moto instead."""
    s3_server.put("awsish", "k.img", b"q" * 321)
    factory = functools.partial(_client_at, s3_server.endpoint)
    src = S3Source("s3://awsish/k.img", MOTO, client_factory=factory)
    assert src.info().size == 321
    assert b"".join(src.open()) == b"q" * 321


def _client_at(endpoint: str, service: str, **kwargs: Any) -> Any:
    kwargs.setdefault("region_name", "us-east-1")
    return boto3.client(service, endpoint_url=endpoint, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vpc", "vhdx", "vdi"])
def test_random_access_converts_each_format_without_scratch(
    s3_auth_server: S3Server, raw_image: Path, tmp_path: Path, fmt: str
) -> None:
    image = _convert(raw_image, fmt)
    url = s3_auth_server.put("formats", f"disk.{fmt}", image)
    opts = S3Options(access_key=s3_auth_server.access_key, secret_key=s3_auth_server.secret_key)
    src = S3Source(url, opts)
    window = src.random_reads()
    assert window is not None
    out = tmp_path / "out.raw"
    try:
        access = window_convert(window, fmt, out)
    finally:
        src.close()
    assert not any(
        s3_auth_server.secret_key in p or s3_auth_server.access_key in p for p in access.params
    )
    assert out.read_bytes() == raw_image.read_bytes()


def test_random_access_over_https_with_ca(
    s3_tls_server: S3Server, raw_image: Path, tmp_path: Path
) -> None:
    image = _convert(raw_image, "qcow2")
    url = s3_tls_server.put("tls", "disk.qcow2", image)
    opts = S3Options("testing", "testing", ca_bundle=s3_tls_server.ca_bundle)
    src = S3Source(url, opts)
    window = src.random_reads()
    assert window is not None
    out = tmp_path / "out.raw"
    try:
        window_convert(window, "qcow2", out)
    finally:
        src.close()
    assert out.read_bytes() == raw_image.read_bytes()


def test_resuming_reader_carries_an_s3_import_across_a_drop(
    s3_server: S3Server, raw_image: Path, cutting_proxy: Callable[..., Any]
) -> None:
    s3_server.put("images", "drop/resume.raw", raw_image)
    proxy = cutting_proxy(s3_server.port, 5 << 20)
    src = S3Source(f"http://127.0.0.1:{proxy.port}/images/drop/resume.raw", MOTO)
    reader = ResumingReader(src, src.info(), sleep=lambda _: None)
    assert _sha(reader) == hashlib.sha256(raw_image.read_bytes()).hexdigest()
    assert reader.resumes == 1 and proxy.cuts == 1

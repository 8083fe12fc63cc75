"""GCS source against the real emulator (fake-gcs-server): bytes, errors, generations,
resume after a drop, random access for qemu-img, and a service-account key's tokens."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.resume import ResumingReader
from importer.sources.gcs import (
    GOOGLE_API,
    GcsOptions,
    GcsSource,
    failure_for,
    parse_gcs_url,
)
from importer.sources.gcsauth import parse_key
from tests.importer.sources.conftest import window_convert
from tests.peers.gcs import GcsServer, TokenEndpoint
from tests.peers.ports import free_port

ANON = GcsOptions()


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


# --- pure decisions ----------------------------------------------------------------------

URLS = {
    "gs": ("gs://bkt/dir/disk.qcow2", None, ("bkt", "dir/disk.qcow2", GOOGLE_API)),
    "gs-literal": ("gs://bkt/a%20b.img", None, ("bkt", "a%20b.img", GOOGLE_API)),
    "gs-emulator": ("gs://bkt/d.img", "127.0.0.1:4443", ("bkt", "d.img", "http://127.0.0.1:4443")),
    "gs-emulator-scheme": (
        "gs://bkt/d.img", "https://gcs.test:8443/", ("bkt", "d.img", "https://gcs.test:8443")
    ),
    "googleapis": (
        "https://storage.googleapis.com/bkt/a/b.img", None, ("bkt", "a/b.img", GOOGLE_API)
    ),
    "console-host": (
        "https://storage.cloud.google.com/bkt/b.img", None, ("bkt", "b.img", GOOGLE_API)
    ),
    "ip-port": ("http://10.1.2.3:4443/bkt/x.img", None, ("bkt", "x.img", "http://10.1.2.3:4443")),
    "escaped": ("http://h:1/bkt/a%20b.img", "ignored:1", ("bkt", "a b.img", "http://h:1")),
}


@pytest.mark.parametrize(("url", "emulator", "expected"), URLS.values(), ids=URLS.keys())
def test_parses_the_urls_cdi_accepts(
    url: str, emulator: str | None, expected: tuple[str, str, str]
) -> None:
    loc = parse_gcs_url(url, emulator)
    assert (loc.bucket, loc.object, loc.api) == expected


@pytest.mark.parametrize(
    "url",
    ["gs://bkt", "gs://bkt/", "gs:///obj", "gs://bkt/dir/", "https://storage.googleapis.com/bkt",
     "ftp://h/bkt/o", "https://user:pw@h/bkt/o", "https://h/bkt/o?x=1", "bkt/o"],
)
def test_refuses_urls_without_bucket_and_object(url: str) -> None:
    with pytest.raises(ImportFailure) as e:
        parse_gcs_url(url)
    assert e.value.reason is Reason.INVALID_CONFIG
    assert "pw" not in e.value.message


@pytest.mark.parametrize(
    ("status", "after_info", "reason", "kind"),
    [
        (404, False, Reason.SOURCE_NOT_FOUND, ImportFailure),
        (404, True, Reason.SOURCE_CHANGED, RestartRequired),
        (412, True, Reason.SOURCE_CHANGED, RestartRequired),
        (401, False, Reason.UNAUTHORIZED, ImportFailure),
        (403, False, Reason.FORBIDDEN, ImportFailure),
        (429, False, Reason.SERVER_ERROR, TransientSourceError),
        (503, True, Reason.SERVER_ERROR, TransientSourceError),
        (400, False, Reason.SERVER_ERROR, ImportFailure),
    ],
)
def test_maps_statuses_to_reasons(status: int, after_info: bool, reason: Reason, kind: type) -> None:
    failure = failure_for(status, "gs://b/o", after_info=after_info)
    assert failure is not None and failure.reason is reason
    assert type(failure) is kind
    assert failure_for(206, "gs://b/o") is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "are not JSON"),
        ("[]", "not a JSON object"),
        ('{"type": "authorized_user", "private_key": "PRIV"}', "type authorized_user"),
        ('{"type": "service_account", "private_key": "PRIV"}', "no client_email"),
        ('{"type": "service_account", "client_email": "a@b"}', "no private_key"),
        ('{"type": "service_account", "client_email": "a@b", "private_key": "PRIV", '
         '"token_uri": "file:///etc/passwd"}', "token_uri"),
    ],
)
def test_bad_key_documents_are_invalid_config_without_the_key(text: str, needle: str) -> None:
    with pytest.raises(ImportFailure) as e:
        parse_key(text, "/google/credentials.json")
    assert e.value.reason is Reason.INVALID_CONFIG
    assert needle in e.value.message
    assert "PRIV" not in e.value.message


# --- against the emulator ----------------------------------------------------------------


def test_streams_the_object_bytes(gcs_server: GcsServer, raw_image: Path) -> None:
    url = gcs_server.put("images", "dir/disk.raw", raw_image)
    src = GcsSource(url, ANON)
    try:
        info = src.info()
        assert info.size == raw_image.stat().st_size
        assert info.supports_ranges and info.validator and info.validator.isdigit()
        assert src.capabilities().random_access
        assert _sha(src.open()) == hashlib.sha256(raw_image.read_bytes()).hexdigest()
    finally:
        src.close()


def test_gs_url_goes_to_the_emulator_host(gcs_server: GcsServer) -> None:
    gcs_server.put("images", "gs/odd name+plus.img", b"gs-bytes" * 1000)
    opts = GcsOptions(emulator_host=gcs_server.endpoint.removeprefix("http://"))
    src = GcsSource("gs://images/gs/odd name+plus.img", opts)
    try:
        assert b"".join(src.open()) == b"gs-bytes" * 1000
    finally:
        src.close()


def test_open_at_offset_reads_the_tail(gcs_server: GcsServer) -> None:
    data = bytes(range(256)) * 4096
    url = gcs_server.put("images", "tail.bin", data)
    src = GcsSource(url, ANON)
    try:
        assert b"".join(src.open(1000)) == data[1000:]
        assert b"".join(src.open(len(data))) == b""
    finally:
        src.close()


def test_object_replaced_between_reads_requires_restart(gcs_server: GcsServer) -> None:
    url = gcs_server.put("images", "changing.bin", b"a" * 100_000)
    src = GcsSource(url, ANON)
    try:
        src.info()
        gcs_server.put("images", "changing.bin", b"b" * 100_000)
        with pytest.raises(RestartRequired) as e:
            b"".join(src.open(10))
        assert e.value.reason is Reason.SOURCE_CHANGED
    finally:
        src.close()


def test_missing_object_and_missing_bucket(gcs_server: GcsServer) -> None:
    gcs_server.ensure_bucket("images")
    with pytest.raises(ImportFailure) as e:
        GcsSource(gcs_server.url("images", "no/such.img"), ANON).info()
    assert e.value.reason is Reason.SOURCE_NOT_FOUND
    assert "images/no/such.img does not exist" in e.value.message
    with pytest.raises(ImportFailure) as e:
        GcsSource(gcs_server.url("no-such-bucket", "x.img"), ANON).info()
    assert e.value.reason is Reason.BUCKET_NOT_FOUND
    assert "no-such-bucket" in e.value.message


def test_unreachable_endpoint_is_a_transient_network_error() -> None:
    src = GcsSource(f"http://127.0.0.1:{free_port()}/b/o.img", ANON)
    with pytest.raises(TransientSourceError) as e:
        src.info()
    assert e.value.reason is Reason.NETWORK_ERROR


def test_loopback_endpoint_refused_when_the_cluster_asks(gcs_server: GcsServer) -> None:
    with pytest.raises(ImportFailure) as e:
        GcsSource(gcs_server.url("b", "o"), GcsOptions(deny_local_addresses=True))
    assert e.value.reason is Reason.ADDRESS_REFUSED


def test_resumes_after_connection_drop(
    gcs_server: GcsServer, raw_image: Path, cutting_proxy: Callable[..., Any]
) -> None:
    gcs_server.put("images", "drop/disk.raw", raw_image)
    proxy = cutting_proxy(gcs_server.port, 5 << 20)
    src = GcsSource(f"http://127.0.0.1:{proxy.port}/images/drop/disk.raw", ANON)
    try:
        reader = ResumingReader(src, src.info(), sleep=lambda _: None)
        assert _sha(reader) == hashlib.sha256(raw_image.read_bytes()).hexdigest()
    finally:
        src.close()
    assert reader.resumes == 1 and proxy.cuts == 1


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_random_access_converts_without_scratch(
    gcs_server: GcsServer, raw_image: Path, tmp_path: Path, fmt: str
) -> None:
    image = tmp_path / f"disk.{fmt}"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw_image), str(image)], check=True
    )
    url = gcs_server.put("formats", f"disk.{fmt}", image)
    src = GcsSource(url, GcsOptions(range_block=1 << 20))
    window = src.random_reads()
    assert window is not None
    out = tmp_path / "out.raw"
    try:
        window_convert(window, fmt, out)
    finally:
        src.close()
    assert out.read_bytes() == raw_image.read_bytes()


# --- a service-account key ----------------------------------------------------------------


def _key_file(tmp_path: Path, key: dict[str, str]) -> str:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(key))
    return str(path)


def test_key_is_exchanged_once_for_a_token_that_reads_the_object(
    gcs_server: GcsServer, raw_image: Path, tmp_path: Path,
    token_endpoint: tuple[TokenEndpoint, dict[str, str]],
) -> None:
    endpoint, key = token_endpoint
    url = gcs_server.put("private", "disk.raw", raw_image)
    src = GcsSource(url, GcsOptions(credentials_file=_key_file(tmp_path, key)))
    try:
        assert _sha(src.open()) == hashlib.sha256(raw_image.read_bytes()).hexdigest()
        assert b"".join(src.open(1 << 20))[:4] == raw_image.read_bytes()[1 << 20 : (1 << 20) + 4]
    finally:
        src.close()
    assert endpoint.exchanges == 1 and endpoint.refused == 0


def test_refused_key_is_unauthorized_and_never_echoed(
    gcs_server: GcsServer, tmp_path: Path,
    token_endpoint: tuple[TokenEndpoint, dict[str, str]],
) -> None:
    endpoint, key = token_endpoint
    endpoint.refuse = True
    url = gcs_server.put("private", "refused.raw", b"x" * 1000)
    src = GcsSource(url, GcsOptions(credentials_file=_key_file(tmp_path, key)))
    with pytest.raises(ImportFailure) as e:
        src.info()
    assert e.value.reason is Reason.UNAUTHORIZED
    assert "refused the service-account key: HTTP 400 (invalid_grant)" in e.value.message
    assert key["client_email"] in e.value.message
    assert "PRIVATE KEY" not in e.value.message and "nope" not in e.value.message
    assert endpoint.refused == 1


def test_key_with_a_broken_private_key_is_invalid_config(
    gcs_server: GcsServer, tmp_path: Path,
    token_endpoint: tuple[TokenEndpoint, dict[str, str]],
) -> None:
    endpoint, key = token_endpoint
    broken = {**key, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}
    url = gcs_server.put("private", "broken.raw", b"x" * 1000)
    src = GcsSource(url, GcsOptions(credentials_file=_key_file(tmp_path, broken)))
    with pytest.raises(ImportFailure) as e:
        src.info()
    assert e.value.reason is Reason.INVALID_CONFIG
    assert "AAAA" not in e.value.message
    assert endpoint.exchanges == 0


def test_missing_key_file_names_the_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as e:
        GcsSource("gs://b/o", GcsOptions(credentials_file=str(tmp_path / "credentials.json")))
    assert e.value.reason is Reason.INVALID_CONFIG
    assert "credentials.json" in e.value.message


def test_stored_md5_is_read_from_gcs_base64() -> None:
    from importer.sources.gcs import stored_md5

    got = stored_md5("XUFAKrxLKna5cZ2REBfFkg==")  # md5("hello")
    assert got is not None and str(got) == "md5:5d41402abc4b2a76b9719d911017c592"
    assert stored_md5(None) is None
    assert stored_md5("not base64!") is None
    assert stored_md5("AAAA") is None  # not 16 bytes


def test_token_endpoint_on_loopback_refused_when_the_cluster_asks(
    token_endpoint: tuple[TokenEndpoint, dict[str, str]],
) -> None:
    """A key's token_uri is the user's too: with the gate on, a loopback one is refused
    (the token is asked for before any storage request, through the same guarded session)."""
    import requests

    from importer.sources.addressguard import guard
    from importer.sources.gcsauth import TokenSource

    endpoint, key = token_endpoint
    session = requests.Session()
    guard(session)
    tokens = TokenSource(parse_key(json.dumps(key), "creds"), session.post)
    with pytest.raises(ImportFailure) as e:
        tokens.token()
    assert e.value.reason is Reason.ADDRESS_REFUSED
    assert endpoint.exchanges == 0 and endpoint.refused == 0

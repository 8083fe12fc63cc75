"""The HTTP source against Debian's nginx: TLS, basic auth, headers, redirects, error statuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.http import HttpOptions, HttpSource, ca_bundle_from_dir
from tests.importer.sources.conftest import Payload, sha256_through_reader
from tests.peers.nginx import NEEDED_HEADER, Nginx, free_port


@pytest.fixture(scope="module")
def served(nginx: Nginx, payload: Payload) -> str:
    return nginx.publish(payload.path, "disk.img")


def test_http_download_is_byte_identical(nginx: Nginx, payload: Payload, served: str) -> None:
    with HttpSource(f"{nginx.http_url}/{served}", HttpOptions()) as source:
        info = source.info()
        assert info.size == len(payload.data)
        assert info.supports_ranges
        assert info.validator and info.validator.startswith('"')
        digest, reader = sha256_through_reader(source)
    assert digest == payload.sha256
    assert reader.resumes == 0


def test_https_with_the_test_ca_bundle(nginx: Nginx, payload: Payload, served: str) -> None:
    opts = HttpOptions(ca_bundle=str(nginx.ca_file))
    with HttpSource(f"{nginx.https_url}/{served}", opts) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


def test_https_with_a_ca_bundle_built_from_a_cert_dir(
    nginx: Nginx, payload: Payload, served: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(nginx.ca_file.read_bytes())
    bundle = ca_bundle_from_dir(str(certs), str(tmp_path / "bundle.pem"))
    assert bundle is not None
    with HttpSource(f"{nginx.https_url}/{served}", HttpOptions(ca_bundle=bundle)) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


def test_https_with_an_untrusted_certificate_is_a_tls_error(nginx: Nginx, served: str) -> None:
    with (
        HttpSource(f"{nginx.https_url}/{served}", HttpOptions()) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert err.value.reason is Reason.TLS_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.message


def test_https_insecure_skips_verification(nginx: Nginx, payload: Payload, served: str) -> None:
    with HttpSource(f"{nginx.https_url}/{served}", HttpOptions(insecure=True)) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


def test_basic_auth_with_the_right_password(nginx: Nginx, payload: Payload, served: str) -> None:
    opts = HttpOptions(basic_auth=(nginx.auth_user, nginx.auth_password))
    with HttpSource(f"{nginx.http_url}/auth/{served}", opts) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


def test_basic_auth_from_url_userinfo(nginx: Nginx, payload: Payload, served: str) -> None:
    url = nginx.http_url.replace("//", f"//{nginx.auth_user}:{nginx.auth_password}@")
    with HttpSource(f"{url}/auth/{served}", HttpOptions()) as source:
        info = source.info()
        assert nginx.auth_password not in info.description
        assert sha256_through_reader(source)[0] == payload.sha256


@pytest.mark.parametrize(
    "auth", [("cdi", "wrong-password"), None], ids=["wrong-password", "no-credentials"]
)
def test_basic_auth_refused_is_unauthorized(
    nginx: Nginx, served: str, auth: tuple[str, str] | None
) -> None:
    with (
        HttpSource(f"{nginx.http_url}/auth/{served}", HttpOptions(basic_auth=auth)) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
        assert err.value.reason is Reason.UNAUTHORIZED
        with pytest.raises(ImportFailure) as err:
            source.open()
        assert err.value.reason is Reason.UNAUTHORIZED
    assert "wrong-password" not in err.value.message


def test_extra_headers_reach_the_server(nginx: Nginx, payload: Payload, served: str) -> None:
    url = f"{nginx.http_url}/needs-header/{served}"
    with HttpSource(url, HttpOptions()) as source, pytest.raises(ImportFailure) as err:
        source.info()
    assert err.value.reason is Reason.FORBIDDEN  # HEAD 403 falls back to GET, also 403
    with HttpSource(url, HttpOptions(headers=(NEEDED_HEADER,))) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


def test_redirect_is_followed(nginx: Nginx, payload: Payload, served: str) -> None:
    with HttpSource(f"{nginx.http_url}/redirect/{served}", HttpOptions()) as source:
        assert source.info().size == len(payload.data)
        assert sha256_through_reader(source)[0] == payload.sha256


def test_redirect_loop_is_refused(nginx: Nginx) -> None:
    with (
        HttpSource(f"{nginx.http_url}/redirect-loop/a", HttpOptions()) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert not isinstance(err.value, TransientSourceError)
    assert "redirect loop" in err.value.message


@pytest.mark.parametrize(
    ("path", "reason", "transient"),
    [
        ("status/404", Reason.SOURCE_NOT_FOUND, False),
        ("no-such-file.img", Reason.SOURCE_NOT_FOUND, False),
        ("status/403", Reason.FORBIDDEN, False),
        ("status/500", Reason.SERVER_ERROR, True),
    ],
)
def test_error_statuses(nginx: Nginx, path: str, reason: Reason, transient: bool) -> None:
    with (
        HttpSource(f"{nginx.http_url}/{path}", HttpOptions()) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
        assert err.value.reason is reason
        assert isinstance(err.value, TransientSourceError) is transient
        with pytest.raises(ImportFailure) as err:
            source.open()
        assert err.value.reason is reason


def test_connection_refused_is_transient() -> None:
    with (
        HttpSource(f"http://127.0.0.1:{free_port()}/x.img", HttpOptions()) as source,
        pytest.raises(TransientSourceError) as err,
    ):
        source.info()
    assert err.value.reason is Reason.NETWORK_ERROR
    assert "ConnectionRefusedError" in err.value.message


def test_resume_offset_uses_range_and_if_range(nginx: Nginx, payload: Payload, served: str) -> None:
    with HttpSource(f"{nginx.http_url}/{served}", HttpOptions()) as source:
        source.info()
        stream = source.open(1_000_000)
        try:
            body = b"".join(stream)
        finally:
            stream.close()
    assert body == payload.data[1_000_000:]


def test_a_changed_file_is_not_resumed_into_a_mix(nginx: Nginx, tmp_path: Path) -> None:
    old = tmp_path / "old.img"
    old.write_bytes(b"a" * 100_000)
    name = nginx.publish(old, "changing.img")
    with HttpSource(f"{nginx.http_url}/{name}", HttpOptions()) as source:
        source.info()
        new = tmp_path / "new.img"
        new.write_bytes(b"b" * 200_000)
        nginx.publish(new, name)
        # If-Range carries the old ETag: nginx answers 200 with the whole new file.
        with pytest.raises(RestartRequired):
            source.open(50_000)
        # The restarted transfer probes again and sees the new object, not a cached one.
        assert source.info().size == 200_000
        assert sha256_through_reader(source)[0] == hashlib.sha256(b"b" * 200_000).hexdigest()

"""Redirects: credentials stay with their origin, and https is never downgraded.

Basic auth, `secretExtraHeaders` and extra headers named Authorization/Cookie go to the
origin only (same scheme, host and port); plain extra headers follow every hop. Checked
on the headers the bad server actually received, for the plain download, the probe and
the pinned view's ranged reads, and end to end through the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.http import HttpOptions, HttpSource
from tests.importer.e2e.conftest import run_importer
from tests.importer.sources.conftest import Payload, sha256_through_reader
from tests.peers.badserver import BadServer
from tests.peers.nginx import Nginx

SECRET = "s3cr3t-header-value"
OPTIONS = HttpOptions(
    headers=(("X-Plain", "plain-value"), ("Authorization", "Bearer extra-credential")),
    origin_headers=(("X-Api-Key", SECRET),),
    basic_auth=("user", "basic-password"),
)


@pytest.fixture
def bad(bad_server: BadServer, payload: Payload) -> BadServer:
    bad_server.add("disk.img", payload.data)
    return bad_server


def _host(req: object) -> str:
    return str(req.headers.get("Host", ""))  # type: ignore[attr-defined]


def _assert_clean_at_other_host(bad: BadServer) -> None:
    other = [r for r in bad.requests_for("disk.img") if _host(r).startswith("localhost")]
    assert other, "the redirect target was never asked"
    for r in other:
        sent = {k.lower(): v for k, v in r.headers.items()}
        assert sent.get("x-plain") == "plain-value"  # harmless headers follow
        assert "x-api-key" not in sent
        assert "authorization" not in sent  # neither basic auth nor the extra credential
        assert SECRET not in str(r.headers)


def test_secrets_stay_at_the_origin_when_redirected_to_another_host(
    bad: BadServer, payload: Payload
) -> None:
    target = bad.url("disk.img", host="localhost")
    with HttpSource(bad.url("origin", redirect_to=target), OPTIONS) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
        window = source.random_reads()
        assert window is not None
        assert window.read_at(5000, 100) == payload.data[5000:5100]
    origin = [r for r in bad.requests_for("origin")]
    assert origin and all(r.headers.get("X-Api-Key") == SECRET for r in origin)
    assert all("Authorization" in r.headers for r in origin)
    _assert_clean_at_other_host(bad)


def test_secrets_follow_a_redirect_within_the_origin(bad: BadServer, payload: Payload) -> None:
    with HttpSource(bad.url("elsewhere", redirect="disk.img"), OPTIONS) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
    reqs = bad.requests_for("disk.img")
    assert reqs and all(r.headers.get("X-Api-Key") == SECRET for r in reqs)


def test_https_to_http_is_refused_before_anything_is_fetched(
    nginx: Nginx, payload: Payload
) -> None:
    name = nginx.publish(payload.path, "downgrade.img")
    opts = HttpOptions(ca_bundle=str(nginx.ca_file), basic_auth=("u", "p"))
    with (
        HttpSource(f"{nginx.https_url}/to-http/{name}", opts) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert err.value.reason is Reason.REDIRECT_REFUSED
    assert "https to plain http" in err.value.message


def test_http_to_http_on_another_host_is_followed_without_credentials_end_to_end(
    bad: BadServer, payload: Payload, tmp_path: Path
) -> None:
    secrets = tmp_path / "extraheaders" / "secret0"
    secrets.mkdir(parents=True)
    (secrets / "key").write_text(f"X-Api-Key: {SECRET}\n")
    target = bad.url("disk.img", host="localhost")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint", bad.url("origin", redirect_to=target), "--dest", str(dest),
        "--extra-header", "X-Plain: plain-value",
        "--secret-headers-dir", str(tmp_path / "extraheaders"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes()[: len(payload.data)] == payload.data
    _assert_clean_at_other_host(bad)
    assert SECRET not in r.stderr


def test_a_downgrade_through_the_cli_is_redirect_refused(
    nginx: Nginx, payload: Payload, tmp_path: Path
) -> None:
    name = nginx.publish(payload.path, "downgrade-cli.img")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(Path(nginx.ca_file).read_bytes())
    r = run_importer(
        "--endpoint", f"{nginx.https_url}/to-http/{name}", "--cert-dir", str(certs),
        "--dest", str(tmp_path / "disk.img"),
    )  # fmt: skip
    assert (r.returncode, r.report["reason"]) == (3, "RedirectRefused"), r.report
    assert not (tmp_path / "disk.img").exists()

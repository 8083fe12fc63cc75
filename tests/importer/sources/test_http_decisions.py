"""Pure decisions of the HTTP source: header lines, URLs in messages, ranges, statuses, CA dirs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, TransientSourceError
from importer.sources.http import (
    HttpOptions,
    HttpSource,
    auth_allowed,
    ca_bundle_from_dir,
    content_length,
    failure_for_status,
    parse_content_range,
    parse_header_line,
    redact_url,
    validator_of,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("X-Token: abc", ("X-Token", "abc")),
        ("Authorization:Bearer  a:b:c ", ("Authorization", "Bearer  a:b:c")),
        ("X-Empty:", ("X-Empty", "")),
    ],
    ids=["plain", "colons-in-value", "empty-value"],
)
def test_header_lines_are_split_at_the_first_colon(line: str, expected: tuple[str, str]) -> None:
    assert parse_header_line(line) == expected


@pytest.mark.parametrize(
    "line",
    ["no colon here", ": value", "Bad Name: v", "X-A: one\r\nX-Injected: two"],
    ids=["no-colon", "no-name", "space-in-name", "crlf-injection"],
)
def test_malformed_header_lines_are_invalid_config(line: str) -> None:
    with pytest.raises(ImportFailure) as err:
        parse_header_line(line)
    assert err.value.reason is Reason.INVALID_CONFIG


@pytest.mark.parametrize("line", ["Bad Name: s3cr3t", "X-Token: s3cr3t\r\nX-Other: 1"])
def test_header_errors_never_quote_the_value(line: str) -> None:
    with pytest.raises(ImportFailure) as err:
        parse_header_line(line)
    assert "s3cr3t" not in err.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@host:8443/a/b.img", "https://host:8443/a/b.img"),
        ("https://host/b.img?X-Amz-Signature=secret", "https://host/b.img?..."),
        ("http://host/plain.img", "http://host/plain.img"),
    ],
    ids=["userinfo", "query", "plain"],
)
def test_urls_in_messages_carry_no_secrets(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-0/1234", (0, 0, 1234)),
        ("bytes 100-199/*", (100, 199, None)),
        ("bytes 5-4/10", None),
        ("items 0-1/2", None),
        (None, None),
    ],
    ids=["full", "unknown-total", "backwards", "wrong-unit", "missing"],
)
def test_content_range_parsing(value: str | None, expected: object) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Content-Length": "42"}, 42),
        ({"Content-Length": "42", "Transfer-Encoding": "chunked"}, None),
        ({"Content-Length": "-1"}, None),
        ({"Content-Length": "lots"}, None),
        ({}, None),
    ],
    ids=["plain", "chunked-wins", "negative", "garbage", "missing"],
)
def test_content_length(headers: dict[str, str], expected: int | None) -> None:
    assert content_length(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ETag": '"abc"', "Last-Modified": "Mon"}, '"abc"'),
        ({"ETag": 'W/"abc"', "Last-Modified": "Mon"}, "Mon"),
        ({}, None),
    ],
    ids=["strong-etag", "weak-etag-falls-back", "none"],
)
def test_if_range_validator_is_a_strong_etag_or_last_modified(
    headers: dict[str, str], expected: str | None
) -> None:
    assert validator_of(headers) == expected


@pytest.mark.parametrize(
    ("origin", "target", "allowed"),
    [
        ("http://h:8080/a", "http://h:8080/b", True),
        ("http://h/a", "https://h/b", True),
        ("https://h/a", "http://h/b", False),
        ("http://h/a", "http://other/b", False),
        ("http://h:8080/a", "http://h:9090/b", False),
    ],
    ids=["same-origin", "https-upgrade", "downgrade", "other-host", "other-port"],
)
def test_credentials_only_go_back_to_their_origin(origin: str, target: str, allowed: bool) -> None:
    assert auth_allowed(urlsplit(origin), urlsplit(target)) is allowed


@pytest.mark.parametrize(
    ("status", "reason", "transient"),
    [
        (404, Reason.SOURCE_NOT_FOUND, False),
        (410, Reason.SOURCE_NOT_FOUND, False),
        (401, Reason.UNAUTHORIZED, False),
        (403, Reason.FORBIDDEN, False),
        (408, Reason.SERVER_ERROR, True),
        (429, Reason.SERVER_ERROR, True),
        (500, Reason.SERVER_ERROR, True),
        (503, Reason.SERVER_ERROR, True),
        (418, Reason.SERVER_ERROR, False),
    ],
)
def test_status_mapping(status: int, reason: Reason, transient: bool) -> None:
    failure = failure_for_status(status, "http://h/x")
    assert failure is not None
    assert failure.reason is reason
    assert isinstance(failure, TransientSourceError) is transient


def test_success_statuses_are_not_failures() -> None:
    assert failure_for_status(200, "x") is None
    assert failure_for_status(206, "x") is None


@pytest.mark.parametrize(
    "url", ["ftp://h/x.img", "file:///etc/passwd", "h/x.img"], ids=["ftp", "file", "no-scheme"]
)
def test_only_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ImportFailure) as err:
        HttpSource(url, HttpOptions())
    assert err.value.reason is Reason.INVALID_CONFIG


def test_a_missing_ca_bundle_is_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as err:
        HttpSource("https://h/x", HttpOptions(ca_bundle=str(tmp_path / "nope.pem")))
    assert err.value.reason is Reason.INVALID_CONFIG


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_ca_bundle_takes_every_pem_file_of_a_configmap_mount(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    data = certs / "..2024_01_01"
    data.mkdir(parents=True)
    (data / "ca.pem").write_text(PEM + "\n")
    (data / "other.crt").write_text(PEM.replace("MIIB", "MIIC"))
    (data / "notes.txt").write_text("not a certificate")
    # The shape kubelet gives a ConfigMap volume: ..data -> timestamped dir, keys as symlinks.
    (certs / "..data").symlink_to(data.name)
    for key in ("ca.pem", "other.crt", "notes.txt"):
        (certs / key).symlink_to(f"..data/{key}")

    into = tmp_path / "bundle.pem"
    assert ca_bundle_from_dir(str(certs), str(into)) == str(into)
    text = into.read_text()
    assert text.count("BEGIN CERTIFICATE") == 2
    assert "MIIB" in text and "MIIC" in text and "not a certificate" not in text


def test_ca_bundle_is_none_for_an_empty_or_missing_dir(tmp_path: Path) -> None:
    into = tmp_path / "bundle.pem"
    assert ca_bundle_from_dir(str(tmp_path / "missing"), str(into)) is None
    (tmp_path / "empty").mkdir()
    assert ca_bundle_from_dir(str(tmp_path / "empty"), str(into)) is None
    assert not into.exists()

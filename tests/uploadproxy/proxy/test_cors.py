"""CORS headers as CDI's proxy (rs/cors 1.7 AllowAll) sends them."""

from __future__ import annotations

import pytest

from uploadproxy.proxy import cors

VARY = [("Vary", "Origin"), ("Vary", "Access-Control-Request-Method"),
        ("Vary", "Access-Control-Request-Headers")]


def test_a_preflight_is_only_an_options_with_a_requested_method() -> None:
    assert cors.is_preflight("OPTIONS", {"Access-Control-Request-Method": "POST"})
    assert not cors.is_preflight("OPTIONS", {})
    assert not cors.is_preflight("POST", {"Access-Control-Request-Method": "POST"})


def test_a_preflight_with_origin_allows_any_origin_the_method_and_the_headers() -> None:
    got = cors.preflight_headers({"Origin": "https://console.example",
                                  "Access-Control-Request-Method": "post",
                                  "Access-Control-Request-Headers": "authorization, content-type"})
    assert got == [*VARY, ("Access-Control-Allow-Origin", "*"),
                   ("Access-Control-Allow-Methods", "POST"),
                   ("Access-Control-Allow-Headers", "Authorization, Content-Type")]


@pytest.mark.parametrize("headers", [
    {"Access-Control-Request-Method": "POST"},
    {"Origin": "https://x", "Access-Control-Request-Method": "CONNECT"},
], ids=["no-origin", "method-not-allowed"])
def test_a_preflight_that_is_not_allowed_gets_only_vary(headers: dict[str, str]) -> None:
    assert cors.preflight_headers(headers) == VARY


@pytest.mark.parametrize(("value", "names"), [
    ("x-cdi-thing", ["X-Cdi-Thing"]),
    ("UPLOAD-OFFSET,upload-checksum", ["Upload-Offset", "Upload-Checksum"]),
    ("a b,,c", ["A", "B", "C"]),
    ("x_y9, \"bad\"", ["X_Y9", "bad"]),
    ("", []),
], ids=["dashes-capitalise", "commas", "spaces-and-empty", "underscore-digits-quotes", "empty"])
def test_requested_headers_are_normalised_as_rs_cors_does(value: str, names: list[str]) -> None:
    assert cors.requested_headers(value) == names


def test_an_actual_request_gets_vary_and_any_origin_when_it_has_an_origin() -> None:
    assert cors.actual_headers("POST", {"Origin": "https://x"}) == [
        ("Vary", "Origin"), ("Access-Control-Allow-Origin", "*")]
    assert cors.actual_headers("POST", {}) == [("Vary", "Origin")]
    assert cors.actual_headers("TRACE", {"Origin": "https://x"}) == [("Vary", "Origin")]

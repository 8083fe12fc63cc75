"""Flags and variables: defaults that fit the Deployment, precise errors for bad values."""

from __future__ import annotations

import pytest

from uploadproxy.proxy import settings

ENV = {"POD_NAMESPACE": "cdi"}


def test_defaults_need_only_the_namespace() -> None:
    s = settings.parse([], ENV)
    assert s.listen == ("0.0.0.0", 8443)
    assert s.metrics_listen == ("0.0.0.0", 8080)
    assert s.namespace == "cdi"
    assert s.ready_timeout == 10
    assert not s.plain_http
    assert s.connect_to is None
    assert s.upload_url(namespace="ns", pvc="disk", path="/v1beta1/upload") == \
        "https://cdi-upload-disk.ns.svc:443/v1beta1/upload"


def test_long_pvc_names_use_the_shortened_service_name() -> None:
    s = settings.parse([], ENV)
    url = s.upload_url(namespace="ns", pvc="d" * 100, path="/v1beta1/upload")
    host = url.removeprefix("https://").split(".")[0]
    assert len(host) <= 63


def test_flags_override_variables() -> None:
    s = settings.parse(["--namespace", "other", "--connect-to", "127.0.0.1:9443",
                        "--metrics-listen", "off", "--listen", "127.0.0.1:0"],
                       {**ENV, "UPLOADPROXY_READY_TIMEOUT": "2.5"})
    assert s.namespace == "other"
    assert s.connect_to == ("127.0.0.1", 9443)
    assert s.metrics_listen is None
    assert s.listen == ("127.0.0.1", 0)
    assert s.ready_timeout == 2.5


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], {}, "namespace"),
    (["--namespace", "Bad_NS"], {}, "not a name"),
    (["--listen", "8443"], ENV, "not an address"),
    (["--ready-timeout", "0"], ENV, "positive"),
    (["--ready-timeout", "soon"], ENV, "number"),
    (["--chunk-size", "10"], ENV, "between"),
    (["--upload-url-template", "http://{service}{path}"], ENV, "https"),
    (["--upload-url-template", "https://{service}/x"], ENV, "{path}"),
    (["--upload-url-template", "https://{nope}{path}"], ENV, "template"),
    (["--log-level", "chatty"], ENV, "log-level"),
], ids=["no-namespace", "bad-namespace", "port-only-no-colon", "zero-timeout",
        "word-timeout", "tiny-chunk", "plain-http-upstream", "no-path", "unknown-field",
        "bad-log-level"])
def test_bad_values_are_refused_with_the_flag_named(argv: list[str], env: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(settings.SettingsError) as e:
        settings.parse(argv, env)
    assert message in str(e.value)

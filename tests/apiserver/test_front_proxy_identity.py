"""The kube-apiserver's front-proxy settings and the identity read from its headers."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from apiserver import authn
from tests.apiserver.pki import CA

CA_PEM = CA("front-proxy-ca").pem
PROXY_CERT = {"subject": ((("commonName", "front-proxy-client"),),)}


def cm(**data: str) -> dict[str, object]:
    return {"data": {"requestheader-client-ca-file": CA_PEM, **data}}


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def config(**kw: object) -> authn.AuthConfig:
    base: dict[str, object] = {"client_ca_pem": CA_PEM,
                               "allowed_names": ("front-proxy-client",)}
    base.update(kw)
    return authn.AuthConfig(**base)  # type: ignore[arg-type]


def test_configmap_as_the_kube_apiserver_writes_it():
    got = authn.AuthConfig.from_configmap(cm(**{
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "requestheader-uid-headers": '["X-Remote-Uid"]',
    }))
    assert got == authn.AuthConfig(CA_PEM, ("front-proxy-client",), ("X-Remote-User",),
                                   ("X-Remote-Uid",), ("X-Remote-Group",),
                                   ("X-Remote-Extra-",))


@pytest.mark.parametrize(("data", "needle"), [
    pytest.param({"requestheader-client-ca-file": ""}, "no requestheader-client-ca-file",
                 id="no-ca"),
    pytest.param({"requestheader-allowed-names": "front-proxy-client"}, "not a JSON list",
                 id="not-json"),
    pytest.param({"requestheader-group-headers": json.dumps({"a": 1})}, "not a JSON list",
                 id="not-a-list"),
])
def test_a_configmap_that_trusts_no_one_is_refused(data: dict[str, str], needle: str):
    with pytest.raises(authn.NoAuthConfig, match=needle):
        authn.AuthConfig.from_configmap(cm(**data))


def test_identity_from_the_configured_headers_only():
    got = authn.authenticate(PROXY_CERT, headers(
        ("X-Remote-User", "alice"), ("X-Remote-Group", "devs"), ("X-Remote-Group", "ops"),
        ("X-Remote-Extra-Scopes", "a"), ("x-remote-extra-scopes", "b"),
        ("X-Remote-Extra-Acme.com%2Fproject", "p1"), ("X-Remote-Uid", "u-1"),
        ("X-Other-User", "mallory"),
    ), config(uid_headers=("X-Remote-Uid",)))
    assert got == authn.Identity(user="alice", uid="u-1", groups=("devs", "ops"),
                                 extra={"scopes": ("a", "b"), "acme.com/project": ("p1",)})


def test_the_first_configured_username_header_that_is_set_wins():
    cfg = config(username_headers=("X-First", "X-Second"))
    assert authn.authenticate(PROXY_CERT, headers(("X-Second", "bob")), cfg).user == "bob"
    got = authn.authenticate(PROXY_CERT, headers(("X-First", "a"), ("X-Second", "b")), cfg)
    assert got.user == "a"


def test_a_malformed_escape_in_an_extra_key_is_kept_as_it_came():
    got = authn.authenticate(PROXY_CERT, headers(
        ("X-Remote-User", "alice"), ("X-Remote-Extra-bad%zz", "v")), config())
    assert got.extra == {"bad%zz": ("v",)}


@pytest.mark.parametrize(("peercert", "hdrs", "needle"), [
    pytest.param(None, [("X-Remote-User", "alice")], "no verified", id="no-cert"),
    pytest.param({}, [("X-Remote-User", "alice")], "no verified", id="empty-cert"),
    pytest.param({"subject": ((("commonName", "kubelet"),),)}, [("X-Remote-User", "a")],
                 "not allowed", id="other-name"),
    pytest.param(PROXY_CERT, [], "no user header", id="no-user"),
    pytest.param(PROXY_CERT, [("X-Remote-User", "")], "no user header", id="empty-user"),
])
def test_no_identity_without_the_proxy_certificate_and_a_user(
        peercert: dict[str, object] | None, hdrs: list[tuple[str, str]], needle: str):
    with pytest.raises(authn.Unauthenticated, match=needle):
        authn.authenticate(peercert, headers(*hdrs), config())


def test_no_allowed_names_means_any_name_the_ca_signed():
    cert = {"subject": ((("organizationName", "x"),), (("commonName", "anything"),))}
    assert authn.is_front_proxy(cert, config(allowed_names=()))
    assert not authn.is_front_proxy(cert, config())

"""Who is calling: the kube-apiserver's front proxy, speaking for a user.

The kube-apiserver publishes how it forwards identities in the ConfigMap
`kube-system/extension-apiserver-authentication`: the CA of its front-proxy client
certificate (`requestheader-client-ca-file`), the common names that certificate may
carry (`requestheader-allowed-names`, none listed: any), and the header names for the
user, uid, groups and extras. The TLS layer verifies the chain against that CA (see
`tls.py`); `authenticate` then checks the common name and reads the identity the way the
kube-apiserver's own request-header authenticator does. Headers from anyone else are
never read: without a verified certificate there is no identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from apiserver.obj import Obj

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class Unauthenticated(Exception):
    """No verified front-proxy certificate, a name not allowed, or no user header."""


class NoAuthConfig(Exception):
    """The ConfigMap lacks what is needed to trust anyone (no request-header CA)."""


@dataclass(frozen=True)
class AuthConfig:
    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, cm: Obj) -> AuthConfig:
        data = cm.get("data") or {}
        ca = data.get("requestheader-client-ca-file", "")
        if "BEGIN CERTIFICATE" not in ca:
            raise NoAuthConfig("extension-apiserver-authentication has no "
                               "requestheader-client-ca-file")
        return cls(
            client_ca_pem=ca,
            allowed_names=_strings(data.get("requestheader-allowed-names")),
            username_headers=_strings(data.get("requestheader-username-headers")),
            uid_headers=_strings(data.get("requestheader-uid-headers")),
            group_headers=_strings(data.get("requestheader-group-headers")),
            extra_prefixes=_strings(data.get("requestheader-extra-headers-prefix")),
        )


def _strings(raw: Any) -> tuple[str, ...]:
    """A JSON list of strings, as the kube-apiserver writes each of these keys."""
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise NoAuthConfig(f"not a JSON list of strings: {str(raw)[:80]!r}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NoAuthConfig(f"not a JSON list of strings: {str(raw)[:80]!r}")
    return tuple(value)


@dataclass(frozen=True)
class Identity:
    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def common_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a certificate as `ssl.SSLObject.getpeercert()` returns it."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def is_front_proxy(peercert: Mapping[str, Any] | None, config: AuthConfig) -> bool:
    """A verified client certificate carrying a name the kube-apiserver allows.

    `peercert` is only present when the TLS layer verified it against the request-header
    CA, so here it is enough that it exists and carries an allowed name.
    """
    cn = common_name(peercert)
    return cn is not None and (not config.allowed_names or cn in config.allowed_names)


def authenticate(peercert: Mapping[str, Any] | None, headers: CIMultiDictProxy[str],
                 config: AuthConfig) -> Identity:
    """The user the front proxy speaks for; raises Unauthenticated."""
    cn = common_name(peercert)
    if cn is None:
        raise Unauthenticated("no verified front-proxy client certificate")
    if not is_front_proxy(peercert, config):
        raise Unauthenticated("front-proxy certificate name is not allowed")
    user = _first(headers, config.username_headers)
    if not user:
        raise Unauthenticated("no user header")
    return Identity(
        user=user,
        uid=_first(headers, config.uid_headers),
        groups=tuple(v for h in config.group_headers for v in headers.getall(h, ()) if v),
        extra=_extras(headers, config.extra_prefixes),
    )


def _first(headers: CIMultiDictProxy[str], names: Sequence[str]) -> str:
    for name in names:
        value = headers.get(name, "")
        if value:
            return value
    return ""


def _extras(headers: CIMultiDictProxy[str],
            prefixes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Extras keyed by the lower-cased, %-decoded rest of the header name."""
    out: dict[str, list[str]] = {}
    for prefix in prefixes:
        plen = len(prefix)
        for name, value in headers.items():
            if len(name) >= plen and name[:plen].lower() == prefix.lower():
                out.setdefault(_unescape(name[plen:].lower()), []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def _unescape(key: str) -> str:
    """%-decoded as Go's url.PathUnescape; a malformed key is kept as it came."""
    if _BAD_ESCAPE.search(key):
        return key
    try:
        return unquote(key, errors="strict")
    except UnicodeDecodeError:
        return key

"""The token key and the mutual-TLS credentials, read through the API and kept current.

Why the API and not mounted files: the objects are created by other components (the
token API server writes the public key ConfigMap, the controller the client certificate
Secret and the CA bundle ConfigMap), possibly after the proxy's pod started, and they
rotate; a mounted Secret that does not exist yet keeps the pod from starting, and a
mounted update arrives a minute late. Reading them is three GETs of named objects in the
proxy's own namespace (RBAC with resourceNames), cached for `max_age` seconds.

Rotation: a token whose signature does not verify, or an upload server whose certificate
is not trusted, makes the caller ask again with `stale=True`, which re-reads the object
when the cached copy is older than `min_refresh` seconds (so a flood of forged tokens
cannot turn into a flood of API calls).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import upload
from uploadproxy.proxy import kube, tls

log = logging.getLogger("cdi-uploadproxy")

PUBLIC_KEY_FIELD = "id_rsa.pub"
CA_BUNDLE_FIELD = "ca-bundle.crt"
CERT_FIELD, KEY_FIELD = "tls.crt", "tls.key"

T = TypeVar("T")


class Unavailable(Exception):
    """A credential does not exist yet or cannot be used; the message names the object,
    never its content."""


def parse_public_key(pem: bytes) -> bytes:
    """The PEM itself once it is known to be an RSA public key (PS256 needs RSA)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise Unavailable("not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unavailable("not an RSA public key")
    return pem


def client_context(cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> ssl.SSLContext:
    """TLS to an upload server: our client certificate, their CA, their name checked.

    Only the upload servers' CA is trusted, not the system's: a public CA has no say
    over which server may receive a user's disk image.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks names and chains by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise Unavailable("the upload servers' CA bundle is not PEM certificates") from exc
    try:
        tls.load_pem(ctx, cert_pem, key_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise Unavailable("the proxy's client certificate or key is unusable") from exc
    return ctx


def _field(obj: kube.Obj, field: str, *, secret: bool, what: str) -> bytes:
    data = obj.get("data") or {}
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise Unavailable(f"{what} has no {field}")
    if not secret:
        return value.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unavailable(f"{what} holds a malformed {field}") from exc


@dataclass
class Entry(Generic[T]):
    value: T | None = None
    error: str = ""
    fetched: float = float("-inf")


class Cached(Generic[T]):
    """One credential: fetched on first use, again after max_age, or when stale."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], name: str, *, max_age: float,
                 min_refresh: float, clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._name = name
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._clock = clock
        self._entry: Entry[T] = Entry()
        self._lock = asyncio.Lock()

    async def get(self, *, stale: bool = False) -> T:
        async with self._lock:
            age = self._clock() - self._entry.fetched
            if age >= self._max_age or (stale and age >= self._min_refresh):
                await self._refresh()
            if self._entry.value is None:
                raise Unavailable(self._entry.error)
            return self._entry.value

    async def _refresh(self) -> None:
        self._entry.fetched = self._clock()
        try:
            value = await self._fetch()
        except Unavailable as exc:
            if str(exc) != self._entry.error:
                log.warning("credential unavailable what=%s reason=%s", self._name, exc)
            # Keep serving with the last good value: a missing object is more likely a
            # hiccup of the API than a revocation, and the next refresh will tell.
            self._entry.error = str(exc)
            return
        if self._entry.value is None or self._entry.error:
            log.info("credential loaded what=%s", self._name)
        self._entry.value, self._entry.error = value, ""


class Credentials:
    """The proxy's key and client TLS context, read from `namespace` through `client`."""

    def __init__(self, client: kube.Kube, namespace: str, *, max_age: float = 30.0,
                 min_refresh: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ns = namespace
        self._key = Cached(self._fetch_key, "token public key", max_age=max_age,
                            min_refresh=min_refresh, clock=clock)
        self._tls = Cached(self._fetch_tls, "upload server client TLS", max_age=max_age,
                            min_refresh=min_refresh, clock=clock)

    async def public_key(self, *, stale: bool = False) -> bytes:
        return await self._key.get(stale=stale)

    async def client_ssl(self, *, stale: bool = False) -> ssl.SSLContext:
        return await self._tls.get(stale=stale)

    async def _read(self, kind: str, name: str) -> kube.Obj:
        what = f"{kind} {self._ns}/{name}"
        try:
            if kind == "Secret":
                obj = await self._client.get_secret(self._ns, name)
            else:
                obj = await self._client.get_config_map(self._ns, name)
        except (kube.ApiError, aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
            raise Unavailable(f"cannot read {what}: {type(exc).__name__}") from exc
        if obj is None:
            raise Unavailable(f"{what} does not exist")
        return obj

    async def _fetch_key(self) -> bytes:
        what = f"ConfigMap {self._ns}/{upload.PUBLIC_KEY_CONFIGMAP}"
        cm = await self._read("ConfigMap", upload.PUBLIC_KEY_CONFIGMAP)
        try:
            return parse_public_key(_field(cm, PUBLIC_KEY_FIELD, secret=False, what=what))
        except Unavailable as exc:
            raise Unavailable(f"{what}: {exc}") from None

    async def _fetch_tls(self) -> ssl.SSLContext:
        sec_what = f"Secret {self._ns}/{upload.PROXY_CLIENT_CERT_SECRET}"
        cm_what = f"ConfigMap {self._ns}/{upload.SERVER_CA_BUNDLE_CONFIGMAP}"
        secret = await self._read("Secret", upload.PROXY_CLIENT_CERT_SECRET)
        bundle = await self._read("ConfigMap", upload.SERVER_CA_BUNDLE_CONFIGMAP)
        return client_context(
            _field(secret, CERT_FIELD, secret=True, what=sec_what),
            _field(secret, KEY_FIELD, secret=True, what=sec_what),
            _field(bundle, CA_BUNDLE_FIELD, secret=False, what=cm_what),
        )

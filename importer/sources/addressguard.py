"""Refuse to fetch from loopback and link-local addresses (opt-in, CDIConfig feature gate).

An importer pod fetches whatever URL a tenant writes into a DataVolume, from inside the
cluster network: `http://169.254.169.254/...` (a cloud's metadata service, with node
credentials) or `http://127.0.0.1:10255/` are then one manifest away. With the guard on,
every connection the HTTP and registry sources open is checked on the address it actually
connected to, after DNS and after every redirect hop, so neither a redirect nor a DNS name
that resolves differently the second time (rebinding) gets around it. S3 endpoints are
checked by resolving their host before the client is made (botocore opens its own
connections). A connection to a configured proxy is not checked: the proxy resolves the
target, and it is the cluster admin's own configuration.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from importer.sources.proxytls import ProxyVerifyingAdapter

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_local(address: IP) -> bool:
    """Loopback, link-local or unspecified (also as an IPv4-mapped IPv6 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_link_local or address.is_unspecified


class LocalAddressRefused(OSError):
    """A connection reached a loopback or link-local address while the guard is on."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} is {address}, a loopback or link-local address")
        self.host = host
        self.address = address


def check_peer(sock: socket.socket, host: str) -> None:
    try:
        peer = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError, IndexError):
        return  # not an IP socket (a Unix socket): nothing to check
    if is_local(peer):
        sock.close()
        raise LocalAddressRefused(host, str(peer))


def check_host(host: str, port: int) -> None:
    """Resolve `host` now and refuse it if any address is local (for clients we cannot hook)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return  # the client's own connection attempt reports the failure
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if is_local(address):
            raise LocalAddressRefused(host, str(address))


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if self.proxy is None:
            check_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if self.proxy is None:
            check_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(ProxyVerifyingAdapter):
    """A requests adapter whose connections refuse local peers (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


def guard(session: Any) -> None:
    """Mount the guarded adapter on a requests.Session for http and https."""
    adapter = GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def refused_in(exc: BaseException) -> LocalAddressRefused | None:
    """The LocalAddressRefused somewhere in an exception's causes (requests wraps it)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, LocalAddressRefused):
            return current
        reason = getattr(current, "reason", None)
        todo += [current.__cause__, current.__context__]
        todo += [a for a in current.args if isinstance(a, BaseException)]
        if isinstance(reason, BaseException):
            todo.append(reason)
    return None


__all__ = [
    "GuardedAdapter",
    "LocalAddressRefused",
    "check_host",
    "guard",
    "is_local",
    "refused_in",
]

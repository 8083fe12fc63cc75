"""Mutual TLS for the upload server: who may upload is decided by the client certificate.

The TLS layer verifies a client certificate when one is offered (CERT_OPTIONAL: the
kubelet's readiness probe on /healthz has none), so a certificate that reaches a handler
chains to the client CA. Each upload request then needs such a certificate, and its
subject CN must be the proxy's (CDI checks the same: `VerifiedChains` and `ClientName`).
"""

from __future__ import annotations

import ssl
from enum import StrEnum
from typing import Any


class Peer(StrEnum):
    ALLOWED = "allowed"
    NO_CERTIFICATE = "no-certificate"
    WRONG_NAME = "wrong-name"


def server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Serving certificate and key, client certificates verified against `client_ca` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def common_names(peer_cert: dict[str, Any] | None) -> list[str]:
    """The subject CNs of a certificate as `SSLSocket.getpeercert()` returns it."""
    if not peer_cert:
        return []
    return [
        value for rdn in peer_cert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]


def check_peer(peer_cert: dict[str, Any] | None, expected_name: str) -> Peer:
    """ALLOWED only for a (verified) certificate whose subject CN is `expected_name`."""
    if not peer_cert:
        return Peer.NO_CERTIFICATE
    if expected_name not in common_names(peer_cert):
        return Peer.WRONG_NAME
    return Peer.ALLOWED

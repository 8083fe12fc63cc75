"""Who a verified peer certificate names, as `SSLSocket.getpeercert()` shapes it."""

from __future__ import annotations

import pytest

from uploadproxy.server.tlsauth import Peer, check_peer, common_names

PROXY = "client.upload-server.cdi.kubevirt.io"


def cert(*rdns: tuple[tuple[str, str], ...]) -> dict[str, object]:
    return {"subject": rdns}


@pytest.mark.parametrize(
    ("peer", "verdict"),
    [
        (None, Peer.NO_CERTIFICATE),
        ({}, Peer.NO_CERTIFICATE),
        (cert((("commonName", PROXY),)), Peer.ALLOWED),
        (cert((("organizationName", "x"),), (("commonName", PROXY),)), Peer.ALLOWED),
        (cert((("commonName", "someone.else"),)), Peer.WRONG_NAME),
        (cert((("organizationName", PROXY),)), Peer.WRONG_NAME),
        (cert((("commonName", PROXY + ".evil"),)), Peer.WRONG_NAME),
    ],
    ids=["none", "empty", "cn", "cn-after-o", "other-cn", "name-in-o", "suffix"],
)
def test_check_peer(peer: dict[str, object] | None, verdict: Peer) -> None:
    assert check_peer(peer, PROXY) is verdict


def test_common_names_in_order() -> None:
    assert common_names(cert((("commonName", "a"),), (("commonName", "b"),))) == ["a", "b"]

"""The proxy's own certificate: self-signed when none is mounted, the mounted pair when it
appears or changes (new connections get it, no restart)."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from cryptography import x509

from tests.uploadproxy.proxy.pki import CA
from uploadproxy.proxy import settings
from uploadproxy.proxy.cli import ServingCert


def _served_name(ctx: ssl.SSLContext) -> str:
    """The CN of the certificate `ctx` presents, by a real handshake in memory."""
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    cobj = client.wrap_bio(c_in, c_out, server_hostname="x")
    sobj = ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (cobj, sobj):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = cobj.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_self_signed_until_a_pair_is_mounted_then_the_newest_pair(tmp_path: Path) -> None:
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    s = settings.parse(["--tls-cert-file", str(crt), "--tls-key-file", str(key)],
                       {"POD_NAMESPACE": "cdi"})
    serving = ServingCert(s)
    assert _served_name(serving.context) == "cdi-uploadproxy"
    ca = CA("ingress")
    for name in ("proxy.example", "proxy2.example"):
        pair = ca.issue(name, dns=[name])
        crt.write_bytes(pair.cert)
        key.write_bytes(pair.key)
        assert serving.reload()
        assert _served_name(serving.context) == name
    key.write_bytes(b"garbage")
    crt.write_bytes(CA("x").issue("broken").cert)
    assert serving.reload()  # still serving the last good pair
    assert _served_name(serving.context) == "proxy2.example"

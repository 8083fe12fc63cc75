"""The webhook's generated certificate works for a real TLS client that trusts only the CA,
under the Service DNS name the API server uses, and the review answers as the API expects."""

import asyncio
import socket
import ssl
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from controller import certs, webhook
from tests.controller import factories as f


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def review(obj, operation="CREATE", old=None):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "req-1", "operation": operation, "object": obj,
                        "oldObject": old}}


def test_webhook_serves_reviews_over_tls_trusted_by_the_generated_ca():
    serving = certs.generate("cdi-api", "cdi")
    port = free_port()

    async def go():
        runner = web.AppRunner(webhook.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port,
                          ssl_context=webhook.ssl_context(serving)).start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                ca = Path(tmp) / "ca.crt"
                ca.write_bytes(serving.ca_pem)
                client_ctx = ssl.create_default_context(cafile=str(ca))
            # Connect to 127.0.0.1 but verify the name the API server dials.
            resolver = {"cdi-api.cdi.svc": "127.0.0.1"}

            class Resolver(aiohttp.abc.AbstractResolver):
                async def resolve(self, host, port=0, family=socket.AF_INET):
                    return [{"hostname": host, "host": resolver[host], "port": port,
                             "family": family, "proto": 0, "flags": 0}]

                async def close(self):
                    pass

            conn = aiohttp.TCPConnector(ssl=client_ctx, resolver=Resolver())
            async with aiohttp.ClientSession(connector=conn) as s:
                url = f"https://cdi-api.cdi.svc:{port}{webhook.PATH}"
                async with s.post(url, json=review(f.dv())) as r:
                    ok = await r.json()
                bad_dv = f.dv(source={"blank": {}, "http": {"url": "http://h/x"}})
                async with s.post(url, json=review(bad_dv)) as r:
                    bad = await r.json()
            return ok, bad
        finally:
            await runner.cleanup()

    ok, bad = asyncio.run(asyncio.wait_for(go(), 20))
    assert ok["response"] == {"uid": "req-1", "allowed": True}
    assert bad["response"]["allowed"] is False
    assert "exactly one source type" in bad["response"]["status"]["message"]


def test_update_changing_the_spec_is_denied():
    old = f.dv()
    new = f.dv(source={"http": {"url": "http://h/x"}})
    out = webhook.review_response(review(new, "UPDATE", old))
    assert out["response"]["allowed"] is False
    assert out["response"]["status"]["message"] == "Cannot update DataVolume Spec"


def test_certificate_names_cover_the_service():
    assert "cdi-api.cdi.svc" in certs.dns_names("cdi-api", "cdi")

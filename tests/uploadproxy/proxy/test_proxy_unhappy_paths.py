"""When a side lets go mid-upload: the other side learns of it at once, nothing hangs, and
the proxy's counters say what happened."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import time

import pytest

from tests.uploadproxy.proxy.harness import READY, World

pytestmark = pytest.mark.cluster

ASYNC = "/v1beta1/upload-async"
MIB = 1 << 20


def test_a_client_that_drops_mid_body_cuts_the_upstream_connection(world: World) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", world.port, context=ctx, timeout=30)
    conn.putrequest("POST", ASYNC)
    conn.putheader("Authorization", f"Bearer {world.token('disk')}")
    conn.putheader("Content-Length", str(64 * MIB))
    conn.endheaders()
    for _ in range(8):
        conn.send(os.urandom(MIB))
    time.sleep(0.5)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    [got] = world.wait_received(1)
    # The upload server saw a short body and an error, not a complete-looking upload.
    assert not got["complete"] and got["size"] < 64 * MIB
    deadline = time.monotonic() + 10
    while "upload abandoned by client" not in world.proxy_log_text():
        assert time.monotonic() < deadline, world.proxy_log_text()[-2000:]
        time.sleep(0.1)


def test_an_early_answer_reaches_the_client_without_waiting_for_the_body(world: World) -> None:
    world.pvc("status", READY)
    world.behave("status", early=True, status=503, reply="an upload is in progress\n")
    start = time.monotonic()
    body = (os.urandom(MIB) for _ in range(64))
    r = world.request("POST", ASYNC, token=world.token("status"), body=body, length=64 * MIB)
    assert r.status == 503 and r.body == b"an upload is in progress\n"
    assert time.monotonic() - start < 20
    # and the proxy still serves
    assert world.request("POST", ASYNC, token=world.token("disk"), body=b"abc").status == 200


def test_an_upload_server_that_dies_mid_body_is_a_502(world: World) -> None:
    world.behave("disk", die_after=4 * MIB)
    body = (os.urandom(MIB) for _ in range(32))
    r = world.request("POST", ASYNC, token=world.token("disk"), body=body, length=32 * MIB)
    assert r.status == 502
    assert b"closed the connection" in r.body


def test_metrics_count_answers_and_bytes(world: World) -> None:
    world.request("POST", ASYNC, token=world.token("disk"), body=b"x" * 1000)
    world.request("POST", ASYNC, body=b"x")
    text = world.metrics()
    assert 'cdi_uploadproxy_requests_total{code="200"} 1.0' in text
    assert 'cdi_uploadproxy_requests_total{code="400"} 1.0' in text
    assert "cdi_uploadproxy_bytes_total 1000.0" in text
    assert "cdi_uploadproxy_uploads_in_flight 0.0" in text

"""The proxy against the real API server and a real mutual-TLS upload server: who gets
through, what arrives, and how the answer comes back."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from cdicontract import annotations as ann
from cdicontract import upload
from tests.uploadproxy.proxy import pki
from tests.uploadproxy.proxy.harness import READY, World

pytestmark = pytest.mark.cluster

ASYNC = "/v1beta1/upload-async"


def test_a_raw_upload_arrives_byte_identical_with_its_headers(world: World) -> None:
    body = os.urandom(3 << 20)
    resp = world.request("POST", ASYNC, token=world.token("disk"), body=body, headers={
        "Content-Type": "application/octet-stream", "Upload-Checksum": "sha256:ab",
        "Upload-Offset": "0"})
    assert (resp.status, resp.body) == (200, b"ok\n")
    [got] = world.received()
    assert got["path"] == ASYNC
    assert got["host"] == pki.server_name(world.ns, "disk")
    assert got["client_cn"] == [upload.CLIENT_COMMON_NAME]
    assert got["size"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest()
    h = got["headers"]
    assert h["Content-Length"] == str(len(body))
    assert h["Content-Type"] == "application/octet-stream"
    assert h["Upload-Checksum"] == "sha256:ab" and h["Upload-Offset"] == "0"
    assert "Authorization" not in h


def test_a_form_upload_arrives_untouched_boundary_and_all(world: World) -> None:
    boundary = "----cdi-py-boundary"
    payload = os.urandom(1 << 20)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"disk.img\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    ctype = f"multipart/form-data; boundary={boundary}"
    resp = world.request("POST", "/v1alpha1/upload-form", token=world.token("disk"),
                         body=body, headers={"Content-Type": ctype})
    assert resp.status == 200
    [got] = world.received()
    assert got["path"] == "/v1alpha1/upload-form"
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["headers"]["Content-Type"] == ctype


def test_a_body_without_length_goes_on_chunked(world: World) -> None:
    parts = [os.urandom(100_000) for _ in range(5)]

    def chunked() -> list[bytes]:
        return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]

    resp = world.request("POST", "/v1beta1/upload", token=world.token("disk"), body=chunked(),
                         headers={"Transfer-Encoding": "chunked"})
    assert resp.status == 200
    [got] = world.received()
    assert got["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def _refusal(world: World, header: str | None) -> tuple[int, bytes]:
    headers = {} if header is None else {"Authorization": header}
    r = world.request("POST", ASYNC, headers=headers, body=b"x" * 1000)
    return r.status, r.body


def test_every_token_refusal_row(world: World) -> None:
    other_private, _ = pki.rsa_pair()
    expired = world.token("disk", now=datetime.now(UTC) - timedelta(minutes=5, seconds=11))
    rows = {
        "no header": (None, 400),
        "malformed": ("Bearer not a token", 400),
        "not bearer": ("Basic dXNlcjpwdw==", 400),
        "forged": ("Bearer " + world.token("disk", private=other_private), 401),
        "expired": ("Bearer " + expired, 401),
        "garbage jwt": ("Bearer abc.def.ghi", 401),
    }
    for name, (header, status) in rows.items():
        got, body = _refusal(world, header)
        assert got == status, f"{name}: {got} {body!r}"
        if header and len(header.split()[-1]) > 10:
            assert header.split()[-1].encode() not in body, name
    assert world.received() == []


def test_a_token_for_another_pvc_reaches_only_that_pvc(world: World) -> None:
    world.pvc("other", READY)
    resp = world.request("POST", ASYNC, token=world.token("other"), body=b"abc")
    assert resp.status == 200
    [got] = world.received()
    assert got["host"] == pki.server_name(world.ns, "other")
    # and a token naming a PVC of another namespace is judged by that namespace's PVC
    resp = world.request("POST", ASYNC, token=world.token("disk", namespace="kube-system"),
                         body=b"abc")
    assert resp.status == 503 and b"does not exist" in resp.body


def test_target_refusals(world: World) -> None:
    world.pvc("not-target", {ann.POD_READY: "true"})
    world.pvc("done", {**READY, ann.POD_PHASE: "Succeeded"})
    r = world.request("POST", ASYNC, token=world.token("not-target"), body=b"abc")
    assert r.status == 503 and b"not an upload target" in r.body
    r = world.request("POST", ASYNC, token=world.token("done"), body=b"abc")
    assert r.status == 409 and b"already finished" in r.body
    r = world.request("POST", ASYNC, token=world.token("missing"), body=b"abc")
    assert r.status == 503
    assert world.received() == []


def test_not_ready_within_ten_seconds_is_503(world: World) -> None:
    world.pvc("never-ready", {ann.UPLOAD_TARGET: "", ann.POD_READY: "false"})
    start = time.monotonic()
    r = world.request("POST", ASYNC, token=world.token("never-ready"), body=b"abc")
    took = time.monotonic() - start
    assert r.status == 503 and b"not ready" in r.body
    assert 9.5 <= took < 20, took
    assert world.received() == []


def test_becoming_ready_while_waiting_lets_the_upload_through(world: World) -> None:
    world.pvc("slow", {ann.UPLOAD_TARGET: ""})
    timer = threading.Timer(2.0, world.annotate, args=("slow", {ann.POD_READY: "true"}))
    timer.start()
    try:
        start = time.monotonic()
        r = world.request("POST", ASYNC, token=world.token("slow"), body=b"abc")
    finally:
        timer.join()
    assert r.status == 200
    assert 1.5 < time.monotonic() - start < 15


def test_the_upload_servers_answer_and_status_come_back(world: World) -> None:
    world.pvc("status", READY)
    world.behave("status", status=416, headers={"Upload-Offset": "4096"},
                 reply="offset mismatch\n")
    r = world.request("POST", ASYNC, token=world.token("status"), body=b"abc",
                      headers={"Upload-Offset": "1"})
    assert r.status == 416
    assert r.headers["Upload-Offset"] == "4096"
    assert r.body == b"offset mismatch\n"


def test_sync_keepalive_spaces_arrive_as_they_are_sent(world: World) -> None:
    world.pvc("keepalive", READY)
    world.behave("keepalive", keepalive=4, reply="done\n")
    r = world.request("POST", "/v1beta1/upload", token=world.token("keepalive"), body=b"abc")
    assert r.status == 200
    assert r.body == b"    done\n"
    # streamed, not buffered: the pieces came over about two seconds, not all at the end
    assert len(r.arrivals) >= 3 and r.arrivals[-1] - r.arrivals[0] > 1.0


def test_head_probe_and_resume_offset(world: World) -> None:
    # virtctl's probe of async support
    r = world.request("HEAD", "/v1alpha1/upload-async")
    assert r.status == 200
    assert world.received() == []
    # with a token, the upload server is asked for its offset
    world.behave("disk", headers={"Upload-Offset": "1048576"})
    r = world.request("HEAD", ASYNC, token=world.token("disk"))
    assert r.status == 200 and r.headers.get("Upload-Offset") == "1048576"
    [got] = world.received()
    assert got["method"] == "HEAD" and got["path"] == ASYNC
    # a bad token on HEAD is refused as on POST
    r = world.request("HEAD", ASYNC, token=world.token("disk", private=pki.rsa_pair()[0]))
    assert r.status == 401


def test_head_answers_200_when_the_upload_server_is_unreachable(world: World) -> None:
    world.stop_upstream()
    r = world.request("HEAD", ASYNC, token=world.token("disk"))
    assert r.status == 200 and "Upload-Offset" not in r.headers
    r = world.request("POST", ASYNC, token=world.token("disk"), body=b"abc")
    assert r.status == 503 and b"unreachable" in r.body


def test_an_upload_server_with_an_untrusted_certificate_gets_nothing(world: World) -> None:
    world.config_map(upload.SERVER_CA_BUNDLE_CONFIGMAP,
                     {"ca-bundle.crt": pki.CA("someone else").pem.decode()})
    time.sleep(1.2)  # past --credentials-min-refresh, so the proxy reads the bundle again
    r = world.request("POST", ASYNC, token=world.token("disk"), body=b"abc")
    assert r.status == 502 and b"does not trust" in r.body
    assert [g for g in world.received() if "size" in g] == []


def test_a_rotated_signing_key_is_picked_up(world: World) -> None:
    assert world.request("POST", ASYNC, token=world.token("disk"), body=b"a").status == 200
    world.private, world.public = pki.rsa_pair()
    world.config_map(upload.PUBLIC_KEY_CONFIGMAP, {"id_rsa.pub": world.public.decode()})
    time.sleep(1.2)
    r = world.request("POST", ASYNC, token=world.token("disk"), body=b"b")
    assert r.status == 200


def test_cors_preflight_and_actual_headers(world: World) -> None:
    r = world.request("OPTIONS", ASYNC, headers={
        "Origin": "https://console.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status == 200 and r.body == b""
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "POST"
    assert r.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    r = world.request("POST", ASYNC, body=b"x", headers={"Origin": "https://console.example"})
    assert r.status == 400
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Vary"] == "Origin"


def test_two_concurrent_uploads_to_different_pvcs(world: World) -> None:
    # Both upload servers hold their bodies until released: the two uploads can only
    # both be in flight at once if the proxy streams them side by side.
    world.pvc("other", READY)
    world.behave("disk", pause=True)
    world.behave("other", pause=True)
    bodies = {"disk": os.urandom(8 << 20), "other": os.urandom(8 << 20)}
    results: dict[str, int] = {}

    def send(pvc: str) -> None:
        results[pvc] = world.request("POST", ASYNC, token=world.token(pvc),
                                     body=bodies[pvc]).status

    threads = [threading.Thread(target=send, args=(p,)) for p in bodies]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while "cdi_uploadproxy_uploads_in_flight 2.0" not in world.metrics():
            assert time.monotonic() < deadline, world.metrics()
            time.sleep(0.2)
    finally:
        world.release()
        for t in threads:
            t.join()
    assert results == {"disk": 200, "other": 200}
    got = {g["host"]: g["sha256"] for g in world.received()}
    assert got == {pki.server_name(world.ns, p): hashlib.sha256(b).hexdigest()
                   for p, b in bodies.items()}


def test_an_archive_pvc_is_sent_to_the_archive_path(world: World) -> None:
    world.pvc("archive", {**READY, ann.CONTENT_TYPE: "archive"})
    r = world.request("POST", "/v1alpha1/upload-form-async", token=world.token("archive"),
                      body=b"tar", headers={"Content-Type": "application/x-tar"})
    assert r.status == 200
    [got] = world.received()
    assert got["path"] == "/v1alpha1/upload-archive"

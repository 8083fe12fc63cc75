"""When the answer comes (async: once the body is taken; sync: when written, kept alive
while conversion lasts) and that a slow pipeline stops the reads (no unbounded buffer)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from tests.uploadproxy.server.gates import Gates
from tests.uploadproxy.server.images import body, reference, same_disk
from tests.uploadproxy.server.rawclient import RawUpload

MiB = 1 << 20


def test_async_answers_before_conversion_ends(upload_server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    image = body(ref, "qcow2")
    gates = Gates()
    gates.commit.clear()  # the image cannot be finished until the test allows it
    server = upload_server(target_factory=gates.factory())
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload-async"), data=image.read_bytes(), timeout=30)
    assert r.status_code == 200, r.text
    assert not Path(server.config.dest).exists()
    assert server.state == "processing"
    gates.commit.set()
    server.wait_finished()
    assert server.session.final.ok
    assert same_disk(ref, Path(server.config.dest))


def test_sync_keeps_the_connection_alive_while_converting(upload_server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    image = body(ref, "qcow2")
    gates = Gates()
    gates.commit.clear()
    server = upload_server(
        target_factory=gates.factory(), keepalive_after=0.3, keepalive_interval=0.1
    )
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=image.read_bytes(), stream=True, timeout=30)
        assert r.status_code == 200  # headers arrived while the image is not written yet
        assert gates.commit_reached.wait(30)
        first = r.raw.read(3)
        assert first == b"   "
        assert not Path(server.config.dest).exists()
        gates.commit.set()
        rest = r.raw.read()
    text = (first + rest).decode()
    assert text.strip().count("\n") == 0
    report = json.loads(text.strip())
    assert report["reason"] == "Completed"
    assert report["message"] == "Upload Complete"
    assert same_disk(ref, Path(server.config.dest))


def test_a_failure_after_the_keepalive_is_the_result_line(upload_server, tmp_path: Path) -> None:
    """The 200 went out early; the failure is in the line and, since a client that only
    reads the status (virtctl) waits for the PVC's phase, in the report: the server ends."""
    ref = reference(tmp_path)
    gates = Gates()
    gates.commit.clear()
    gates.commit_failure = ImportFailure(Reason.NO_SPACE, "no space left on the volume")
    server = upload_server(
        target_factory=gates.factory(), keepalive_after=0.2, keepalive_interval=0.1
    )
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=ref.read_bytes(), stream=True, timeout=30)
        assert r.status_code == 200
        assert gates.commit_reached.wait(30)
        assert r.raw.read(1) == b" "
        gates.commit.set()
        report = json.loads(r.raw.read().decode().strip())
    assert report["reason"] == "NoSpace"
    server.wait_finished()
    assert server.state == "failed"
    assert server.session.final.reason == "NoSpace"
    assert server.session.exit_code == 1
    assert not Path(server.config.dest).exists()


def test_a_failure_after_an_async_answer_ends_the_server(upload_server, tmp_path: Path) -> None:
    """qcow2: the body is durable in scratch (answered) before the conversion fails."""
    src = tmp_path / "src"
    src.mkdir()
    image = body(reference(src), "qcow2")
    gates = Gates()
    gates.commit.clear()
    gates.commit_failure = ImportFailure(Reason.NO_SPACE, "no space left on the volume")
    server = upload_server(target_factory=gates.factory())
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload-async"), data=image.read_bytes(), timeout=30)
    assert r.status_code == 200
    assert r.text == ""
    gates.commit.set()
    server.wait_finished()
    assert server.state == "failed"
    assert server.session.final.reason == "NoSpace"
    assert server.session.exit_code == 1
    assert not Path(server.config.dest).exists()


def test_a_slow_pipeline_stops_the_client(upload_server, tmp_path: Path) -> None:
    """With the target's writes held, the client can send only a bounded amount."""
    total = 256 * MiB
    piece = os.urandom(MiB)
    gates = Gates()
    gates.writes.clear()
    server = upload_server(target_factory=gates.factory())
    upload = RawUpload(server.tls_socket(), "/v1beta1/upload", total)
    sent = [0]
    failure: list[BaseException] = []

    def sender() -> None:
        try:
            for _ in range(total // MiB):
                upload.send(piece)
                sent[0] += MiB
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    # Wait until the client is stuck: nothing more goes out for a while.
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 2.0:
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        time.sleep(0.05)
    assert not failure
    assert sent[0] < 48 * MiB, f"the server read ahead {sent[0] // MiB} MiB"
    assert server.session.offset < 24 * MiB
    gates.writes.set()
    thread.join(120)
    assert not failure and sent[0] == total
    answer = upload.answer(60)
    assert answer.status == 200, answer.body
    written = Path(server.config.dest)
    assert written.stat().st_size == total
    with written.open("rb") as f:
        f.seek(100 * MiB)
        assert f.read(MiB) == piece

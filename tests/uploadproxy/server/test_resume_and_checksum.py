"""Beyond CDI: a dropped upload pauses and continues at `Upload-Offset`; `Upload-Checksum`
is verified before success and a mismatch leaves no image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cdicontract import upload as contract
from tests.uploadproxy.server.images import body, reference, same_disk
from tests.uploadproxy.server.rawclient import RawUpload
from tests.uploadproxy.server.test_upload_lifecycle import _leftovers, wait_for

MiB = 1 << 20
OFFSET = contract.UPLOAD_OFFSET_HEADER


def _settled_offset(server, quiet: float = 0.5) -> int:
    """The server's offset once it stopped moving for `quiet` seconds."""
    import time

    last, since = server.session.offset, time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = server.session.offset
        if now != last:
            last, since = now, time.monotonic()
    return last


def _drop_at_half(server, data: bytes, headers: dict[str, str] | None = None) -> int:
    """Send half the body, drop the connection; returns the offset the server took."""
    half = len(data) // 2
    upload = RawUpload(server.tls_socket(), "/v1beta1/upload", len(data), headers)
    upload.send(data[:half])
    # Bytes still in flight when the connection drops are lost (the client learns the
    # offset from HEAD); wait until the server took them all, so the offset is known.
    wait_for(lambda: server.session.offset == half)
    upload.drop()
    wait_for(lambda: server.state == "paused")
    return server.session.offset


@pytest.mark.parametrize("kind", ["raw", "qcow2"])
def test_dropped_at_half_then_resumed(upload_server, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src, 8 * MiB)
    data = body(ref, kind).read_bytes()
    server = upload_server()
    _drop_at_half(server, data)
    half = len(data) // 2
    with server.client() as c:
        head = c.head(server.url("/v1beta1/upload-async"))
        assert head.status_code == 200
        offset = int(head.headers[OFFSET])
        assert offset == half
        wrong = c.post(
            server.url("/v1beta1/upload"),
            data=data[offset - 1 :],
            headers={OFFSET: str(offset - 1)},
        )
        assert wrong.status_code == 416
        assert wrong.headers[OFFSET] == str(offset)
        assert server.state == "paused"
        short = c.post(
            server.url("/v1beta1/upload"), data=data[offset:-1], headers={OFFSET: str(offset)}
        )
        assert short.status_code == 400
        assert "not " + str(len(data) - offset - 1) in short.text
        assert server.state == "paused"
        done = c.post(
            server.url("/v1beta1/upload"), data=data[offset:], headers={OFFSET: str(offset)}
        )
    assert done.status_code == 200, done.text
    assert json.loads(done.text)["resumes"] == 1
    server.wait_finished()
    assert server.session.final.resumes == 1
    assert same_disk(ref, Path(server.config.dest))


def test_post_without_offset_while_paused_starts_over(upload_server, tmp_path: Path) -> None:
    ref = reference(tmp_path)
    data = ref.read_bytes()
    server = upload_server()
    _drop_at_half(server, b"\x55" * len(data))  # another image, abandoned at half
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=data)
    assert r.status_code == 200, r.text
    assert same_disk(ref, Path(server.config.dest))


def test_offset_without_a_paused_upload_is_416_at_zero(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=b"x" * 10, headers={OFFSET: "10"})
    assert r.status_code == 416
    assert r.headers[OFFSET] == "0"
    assert server.state == "idle"


def test_a_paused_upload_not_resumed_in_time_is_abandoned(upload_server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    server = upload_server(dest=str(out / "disk.img"), pause_timeout=0.5)
    _drop_at_half(server, b"\x77" * (4 * MiB))
    wait_for(lambda: server.state == "idle")
    assert _leftovers(out / "disk.img") == []
    with server.client() as c:
        head = c.head(server.url("/v1beta1/upload"))
        assert OFFSET not in head.headers
        ok = c.post(server.url("/v1beta1/upload"), data=b"\x01" * MiB)
    assert ok.status_code == 200
    assert (out / "disk.img").read_bytes() == b"\x01" * MiB


def test_good_checksum_passes_across_a_resume(upload_server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = body(reference(src), "raw.gz").read_bytes()
    checksum = {contract.UPLOAD_CHECKSUM_HEADER: "sha256:" + hashlib.sha256(data).hexdigest()}
    server = upload_server()
    half = _drop_at_half(server, data, checksum)
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload"), data=data[half:], headers={OFFSET: str(half), **checksum}
        )
    assert r.status_code == 200, r.text
    assert server.session.final.checksum == "sha256"


def test_checksum_mismatch_is_400_and_leaves_no_image(upload_server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = reference(tmp_path).read_bytes()
    server = upload_server(dest=str(out / "disk.img"))
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload"),
            data=data,
            headers={contract.UPLOAD_CHECKSUM_HEADER: "md5:" + "0" * 32},
        )
        assert r.status_code == 400
        assert "ChecksumMismatch" in r.text
        assert _leftovers(out / "disk.img") == []
        # Nothing was kept, and the server takes the upload again (the right bytes).
        assert c.post(server.url("/v1beta1/upload"), data=data).status_code == 200
        assert c.post(server.url("/v1beta1/upload"), data=data).status_code == 409
    server.wait_finished()
    assert server.session.exit_code == 0


@pytest.mark.parametrize("value", ["sha256", "crc32:00", "sha256:abc", "sha1:" + "g" * 40])
def test_malformed_checksum_header_is_400(upload_server, value: str) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload"),
            data=b"x",
            headers={contract.UPLOAD_CHECKSUM_HEADER: value},
        )
    assert r.status_code == 400
    assert "invalid checksum" in r.text
    assert server.state == "idle"
    assert not Path(server.config.dest).exists()


def test_a_form_upload_shows_progress_and_resumes_with_another_form(
    upload_server, tmp_path: Path
) -> None:
    from tests.uploadproxy.server.rawclient import form

    ref = reference(tmp_path, 8 * MiB)
    data = ref.read_bytes()
    whole, content_type = form(data)
    server = upload_server()
    upload = RawUpload(
        server.tls_socket(), "/v1beta1/upload-form", len(whole), content_type=content_type
    )
    upload.send(whole[: len(whole) // 2])
    # The form reader holds back up to a chunk while it looks for the closing boundary.
    wait_for(lambda: server.session.offset >= len(data) // 2 - 512 * 1024)
    settled = _settled_offset(server)
    assert server.session.percent() == pytest.approx(60.0 * settled / len(whole))
    assert 26.0 <= server.session.percent() <= 30.0
    upload.drop()
    wait_for(lambda: server.state == "paused")
    offset = server.session.offset
    rest, rest_type = form(data[offset:])
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload-form"),
            data=rest,
            headers={"Content-Type": rest_type, OFFSET: str(offset)},
        )
    assert r.status_code == 200, r.text
    assert server.session.percent() == 100.0
    assert same_disk(ref, Path(server.config.dest))

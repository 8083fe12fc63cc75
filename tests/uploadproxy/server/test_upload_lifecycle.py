"""One upload per server: 409 after success, 503 while another connection sends, 400 for a
body too large for the volume (answered while the client is still sending, nothing left)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cdicontract import upload as contract
from tests.uploadproxy.server.images import body, reference, same_disk
from tests.uploadproxy.server.rawclient import RawUpload

MiB = 1 << 20


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith((dest.name, ".cdi")))


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_a_second_upload_after_success_is_409(upload_server, tmp_path: Path) -> None:
    ref = reference(tmp_path)
    server = upload_server(dest=str(tmp_path / "out" / "disk.img"))
    (tmp_path / "out").mkdir()
    with server.client() as c:
        assert c.post(server.url("/v1beta1/upload"), data=ref.read_bytes()).status_code == 200
        again = c.post(server.url("/v1beta1/upload-async"), data=b"other")
        head = c.head(server.url("/v1beta1/upload"))
    assert again.status_code == 409
    assert head.status_code == 200
    assert same_disk(ref, Path(server.config.dest))


def test_a_post_while_another_connection_sends_is_503(upload_server, tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    server = upload_server()
    first = RawUpload(server.tls_socket(), "/v1beta1/upload", len(data))
    first.send(data[:MiB])
    wait_for(lambda: server.state == "receiving")
    with server.client() as c:
        busy = c.post(server.url("/v1beta1/upload"), data=b"intruder")
        head = c.head(server.url("/v1beta1/upload"))
        assert head.status_code == 200
        wait_for(lambda: server.session.offset == MiB)
        head = c.head(server.url("/v1beta1/upload"))
        assert head.headers[contract.UPLOAD_OFFSET_HEADER] == str(MiB)
        resumed_too_soon = c.post(
            server.url("/v1beta1/upload"),
            data=data[MiB:],
            headers={contract.UPLOAD_OFFSET_HEADER: str(MiB)},
        )
    assert busy.status_code == 503
    assert resumed_too_soon.status_code == 503
    first.send(data[MiB:])
    answer = first.answer()
    assert answer.status == 200, answer.body
    assert Path(server.config.dest).read_bytes() == data


def test_too_large_is_400_while_still_sending_and_leaves_nothing(
    upload_server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    server = upload_server(dest=str(out / "disk.img"), image_size=2 * MiB, filesystem_overhead=0.0)
    total = 64 * MiB
    upload = RawUpload(server.tls_socket(), "/v1beta1/upload", total)
    piece = os.urandom(MiB)
    for _ in range(4):  # twice the volume; the rest never needs to be sent
        upload.send(piece)
    answer = upload.answer()
    assert answer.status == 400
    assert b"ImageTooLarge" in answer.body
    assert upload.sent < total
    assert _leftovers(out / "disk.img") == []
    # The client was told; the server stays up for the right image, as CDI's does.
    small = os.urandom(MiB)
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=small)
    assert r.status_code == 200, r.text
    assert Path(server.config.dest).read_bytes()[:MiB] == small


def test_an_image_too_large_for_the_volume_is_400(upload_server, tmp_path: Path) -> None:
    """A qcow2 whose disk exceeds the volume, though its file is small."""
    src = tmp_path / "src"
    src.mkdir()
    image = body(reference(src, 8 * MiB), "qcow2")
    out = tmp_path / "out"
    out.mkdir()
    server = upload_server(dest=str(out / "disk.img"), image_size=4 * MiB, filesystem_overhead=0.0)
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=image.read_bytes())
    assert r.status_code == 400
    assert "ImageTooLarge" in r.text
    assert _leftovers(out / "disk.img") == []


def test_a_form_without_the_file_field_is_400(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload-form"), files={"other": ("x", b"data")})
        assert r.status_code == 400
        assert "'file'" in r.text
        wait_for(lambda: server.state == "idle")
        ok = c.post(
            server.url("/v1beta1/upload-form"), files={contract.FORM_FIELD: ("x", b"A" * 4096)}
        )
    assert ok.status_code == 200, ok.text
    assert json.loads(ok.text)["reason"] == "Completed"


def test_archive_path_extracts_the_tar(upload_server, tmp_path: Path) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in {"a.txt": b"alpha", "dir/b.bin": os.urandom(5000)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    out = tmp_path / "vol"
    out.mkdir()
    server = upload_server(dest=str(out))
    with server.client() as c:
        r = c.post(server.url(contract.archive_path("v1beta1")), data=buf.getvalue())
    assert r.status_code == 200, r.text
    assert (out / "a.txt").read_bytes() == b"alpha"
    assert (out / "dir" / "b.bin").stat().st_size == 5000


def test_a_raw_body_on_the_form_path_is_400(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload-form"),
            data=b"A" * 4096,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert r.status_code == 400
    assert "multipart" in r.text
    wait_for(lambda: server.state == "idle")
    assert not Path(server.config.dest).exists()


def test_archive_with_a_long_tail_of_padding_succeeds(upload_server, tmp_path: Path) -> None:
    """The extraction ends at the tar's end marker, before the client's padding is sent."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"alpha"))
    out = tmp_path / "vol"
    out.mkdir()
    server = upload_server(dest=str(out))
    data = buf.getvalue() + bytes(32 * MiB)
    with server.client() as c:
        r = c.post(server.url(contract.archive_path("v1beta1")), data=data)
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["reason"] == "Completed"
    assert (out / "a.txt").read_bytes() == b"alpha"


def test_a_clone_stream_is_refused(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload"),
            data=b"x" * 100,
            headers={contract.CONTENT_TYPE_HEADER: "filesystem-clone"},
        )
    assert r.status_code == 400
    assert "clone" in r.text
    assert server.state == "idle"


def test_a_qcow2_too_large_is_refused_from_its_header_while_the_client_sends(
    upload_server, tmp_path: Path
) -> None:
    """The virtual size in the first bytes decides: the rest of the body is never needed."""
    from tests import imagefactory

    head = imagefactory.qcow2_oversized(tmp_path, 1 << 40).read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    server = upload_server(dest=str(out / "disk.img"), image_size=64 * MiB, filesystem_overhead=0.0)
    total = 512 * MiB
    upload = RawUpload(server.tls_socket(), "/v1beta1/upload", total)
    upload.send(head)
    upload.send(bytes(MiB - len(head) % MiB))
    answer = upload.answer()
    assert answer.status == 400
    assert b"ImageTooLarge" in answer.body
    assert upload.sent <= 2 * MiB
    # The server stays up for the right image (a refused body is not the end of it).
    wait_for(lambda: _leftovers(out / "disk.img") == [])

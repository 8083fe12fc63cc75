"""Real images POSTed over mutual TLS land on disk exactly as the reference (qemu-img compare)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdicontract import upload as contract
from tests.uploadproxy.server.images import body, reference, same_disk


@pytest.mark.parametrize("kind", ["raw", "qcow2", "raw.gz", "raw.xz"])
@pytest.mark.parametrize("variant", [contract.Variant.SYNC, contract.Variant.FORM])
def test_upload_writes_the_image(upload_server, tmp_path: Path, kind: str, variant) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    image = body(ref, kind)
    server = upload_server()
    url = server.url(contract.path("v1beta1", variant))
    with server.client() as c:
        if variant.is_form:
            with image.open("rb") as f:
                r = c.post(url, files={contract.FORM_FIELD: ("disk", f)})
        else:
            with image.open("rb") as f:
                r = c.post(url, data=f, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    report = json.loads(r.text)
    assert report["reason"] == "Completed"
    server.wait_finished()
    assert server.session.exit_code == 0
    assert same_disk(ref, Path(server.config.dest))


def test_a_chunked_body_without_length(upload_server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    image = body(ref, "raw.xz")
    server = upload_server()

    def pieces():
        data = image.read_bytes()
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    with server.client() as c:
        r = c.post(server.url("/v1beta1/upload"), data=pieces())
    assert r.status_code == 200, r.text
    assert same_disk(ref, Path(server.config.dest))

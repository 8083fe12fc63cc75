"""The target is chosen as the importer chooses it: a block device gets the disk itself; a
volume that fills up answers 400 and keeps nothing (the client may try again)."""

from __future__ import annotations

from pathlib import Path

from tests.peers import devices
from tests.uploadproxy.server.images import body, reference
from tests.uploadproxy.server.test_upload_lifecycle import wait_for

MiB = 1 << 20


def test_qcow2_onto_a_block_device(upload_server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ref = reference(src)
    backing = devices.fill(tmp_path / "backing", 16 * MiB)
    with devices.loop_device(backing) as dev:
        server = upload_server(dest=str(dev))
        with server.client() as c:
            r = c.post(server.url("/v1beta1/upload"), data=body(ref, "qcow2").read_bytes())
        assert r.status_code == 200, r.text
        with dev.open("rb") as f:
            assert f.read(ref.stat().st_size) == ref.read_bytes()


def test_a_full_volume_is_400_and_leaves_nothing(upload_server, tmp_path: Path) -> None:
    with devices.tmpfs(tmp_path / "vol", "2m") as vol:
        server = upload_server(dest=str(vol / "disk.img"))
        data = (b"\x5a" * 4096) * (4 * MiB // 4096)
        with server.client() as c:
            r = c.post(server.url("/v1beta1/upload"), data=data)
        assert r.status_code == 400
        assert "NoSpace" in r.text
        assert list(vol.iterdir()) == []
        wait_for(lambda: server.state == "idle")

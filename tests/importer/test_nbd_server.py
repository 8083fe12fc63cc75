"""`NbdServer` lifecycle against the real nbdkit: start, serve, fail cleanly, clean up."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer import qemu
from importer.errors import ImportFailure
from importer.nbd import NbdServer
from importer.sources.base import RandomAccess
from tests.importer.test_qemu_info import children


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "nbdkit left running"


def test_serves_a_file_read_only_on_a_private_socket(tmp_path: Path) -> None:
    data = tmp_path / "d.raw"
    data.write_bytes(b"\x42" * (1 << 20))
    with NbdServer(RandomAccess("file", (f"file={data}",)), workdir=str(tmp_path)) as nbd:
        sock = nbd.socket_path
        assert nbd.alive()
        assert os.path.dirname(sock).startswith(str(tmp_path))
        qi = qemu.info(nbd.uri, "raw")
        assert qi.virtual_size == 1 << 20
        pid = nbd.pid
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not os.path.exists(sock)
    assert os.listdir(tmp_path) == ["d.raw"]


def test_the_export_refuses_writes(tmp_path: Path) -> None:
    data = tmp_path / "d.raw"
    data.write_bytes(b"\x00" * (1 << 20))
    with NbdServer(RandomAccess("file", (f"file={data}",)), workdir=str(tmp_path)) as nbd:
        r = subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k", nbd.uri],
            capture_output=True, text=True, check=False,
        )
    assert r.returncode != 0 or "failed" in r.stdout + r.stderr
    assert data.read_bytes() == b"\x00" * (1 << 20)


def test_a_plugin_that_cannot_start_is_a_network_error_without_secrets(tmp_path: Path) -> None:
    access = RandomAccess(
        "curl",
        ("url=http://127.0.0.1:1/x?sig=topsecret1", "password=topsecret2", "no-such-key=1"),
    )
    with pytest.raises(ImportFailure) as e, NbdServer(access, workdir=str(tmp_path)):
        pass
    assert e.value.reason is Reason.NETWORK_ERROR
    assert "nbdkit" in e.value.message
    assert "topsecret" not in e.value.message
    assert os.listdir(tmp_path) == []


def test_an_unknown_plugin_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ImportFailure) as e, NbdServer(
        RandomAccess("no-such-plugin", ()), workdir=str(tmp_path)
    ):
        pass
    assert e.value.reason is Reason.NETWORK_ERROR
    assert "no-such-plugin" in e.value.message


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(ImportFailure) as e, NbdServer(
        RandomAccess("null", ("size=1M",)), workdir=str(deep)
    ):
        pass
    assert e.value.reason is Reason.INTERNAL
    assert os.listdir(deep) == []


def test_the_socket_accepts_connections_when_enter_returns(tmp_path: Path) -> None:
    access = RandomAccess("null", ("size=1M",))
    with NbdServer(access, workdir=str(tmp_path)) as nbd, socket.socket(socket.AF_UNIX) as s:
        s.connect(nbd.socket_path)
        assert s.recv(8) == b"NBDMAGIC"


def test_conversion_attempts_reuse_the_inspection_server_once_then_start_fresh(
    tmp_path: Path,
) -> None:
    from importer.nbd import nbd_source

    data = tmp_path / "disk.raw"
    data.write_bytes(b"\1" * 4096)
    access = RandomAccess("file", (f"file={data}",))
    with NbdServer(access, workdir=str(tmp_path)) as running:
        factory = nbd_source(access, workdir=str(tmp_path), running=running)
        with factory() as first:
            assert first == running.uri
        with factory() as second:
            assert second != running.uri  # a retry never reuses the first server
        assert running.alive()

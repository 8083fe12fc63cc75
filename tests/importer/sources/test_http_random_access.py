"""random_access() parameters drive Debian's nbdkit curl plugin for real, qemu-img reading."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from importer.sources.http import HttpOptions, HttpSource
from tests.importer.sources.conftest import Payload, assert_same_raw, nbdkit_convert
from tests.peers.nginx import NEEDED_HEADER, Nginx


@pytest.fixture(scope="module")
def qcow2(nginx: Nginx, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A qcow2 served by nginx, and the raw bytes it must convert back to."""
    work = tmp_path_factory.mktemp("qcow2")
    raw = os.urandom(1024 * 1024) + bytes(2 * 1024 * 1024) + os.urandom(512 * 1024)
    (work / "disk.raw").write_bytes(raw)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", work / "disk.raw", work / "d.qcow2"],
        check=True,
    )
    return nginx.publish(work / "d.qcow2", "disk.qcow2"), raw


@pytest.fixture(scope="module")
def served(nginx: Nginx, payload: Payload) -> str:
    return nginx.publish(payload.path, "disk.img")


def test_raw_over_http_through_nbdkit_is_byte_identical(
    nginx: Nginx, payload: Payload, served: str, tmp_path: Path
) -> None:
    with HttpSource(f"{nginx.http_url}/{served}", HttpOptions()) as source:
        access = source.random_access()
        assert access is not None
        nbdkit_convert(access, "raw", tmp_path / "out")
    assert_same_raw(tmp_path / "out", payload.data)


def test_qcow2_over_https_with_ca_and_basic_auth_without_scratch(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    opts = HttpOptions(
        ca_bundle=str(nginx.ca_file), basic_auth=(nginx.auth_user, nginx.auth_password)
    )
    with HttpSource(f"{nginx.https_url}/auth/{name}", opts) as source:
        access = source.random_access()
        assert access is not None
        # The password is only in a 0600 file, never on nbdkit's command line.
        assert not any(nginx.auth_password in p for p in access.params)
        assert len(access.secret_files) == 1
        secret = Path(access.secret_files[0])
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        nbdkit_convert(access, "qcow2", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == raw
    assert not secret.exists()  # close() removed it


def test_extra_headers_reach_the_server_through_nbdkit_but_not_argv(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    opts = HttpOptions(headers=(NEEDED_HEADER,))
    with HttpSource(f"{nginx.http_url}/needs-header/{name}", opts) as source:
        access = source.random_access()
        assert access is not None
        assert not any(NEEDED_HEADER[1] in p for p in access.params)
        nbdkit_convert(access, "qcow2", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == raw


def test_nbdkit_reads_the_final_url_after_redirects(
    nginx: Nginx, payload: Payload, served: str, tmp_path: Path
) -> None:
    with HttpSource(f"{nginx.http_url}/redirect/{served}", HttpOptions()) as source:
        access = source.random_access()
        assert access is not None
        assert f"url={nginx.http_url}/{served}" in access.params
        assert "followlocation=false" in access.params
        assert "protocols=http,https" in access.params
        nbdkit_convert(access, "raw", tmp_path / "out")
    assert_same_raw(tmp_path / "out", payload.data)


def test_insecure_mode_reaches_nbdkit(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    with HttpSource(f"{nginx.https_url}/{name}", HttpOptions(insecure=True)) as source:
        access = source.random_access()
        assert access is not None
        assert "sslverify=false" in access.params
        nbdkit_convert(access, "qcow2", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == raw

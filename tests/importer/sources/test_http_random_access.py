"""random_reads(): qemu-img reads an HTTP source through the pinned view, for real.

The view is served by the loopback range proxy to Debian's nbdkit curl plugin, and
qemu-img converts from nbdkit, exactly as the pipeline does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from importer.sources.http import HttpOptions, HttpSource
from tests.importer.sources.conftest import Payload, assert_same_raw, window_convert
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


def test_raw_over_http_through_the_pinned_view_is_byte_identical(
    nginx: Nginx, payload: Payload, served: str, tmp_path: Path
) -> None:
    with HttpSource(f"{nginx.http_url}/{served}", HttpOptions()) as source:
        window = source.random_reads()
        assert window is not None
        assert source.random_reads() is window  # one view per source: every reader shares it
        window_convert(window, "raw", tmp_path / "out")
        assert window.object.stats.fetched == len(payload.data)
    assert_same_raw(tmp_path / "out", payload.data)


def test_qcow2_over_https_with_ca_and_basic_auth_without_scratch(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    opts = HttpOptions(
        ca_bundle=str(nginx.ca_file), basic_auth=(nginx.auth_user, nginx.auth_password)
    )
    with HttpSource(f"{nginx.https_url}/auth/{name}", opts) as source:
        window = source.random_reads()
        assert window is not None
        access = window_convert(window, "qcow2", tmp_path / "out")
    # nbdkit reads a local socket: no URL of the server, no credential, no CA on its argv.
    argv = " ".join((*access.params, *access.filter_params))
    assert nginx.auth_password not in argv and nginx.https_url not in argv
    assert access.secret_files == ()
    assert (tmp_path / "out").read_bytes() == raw


def test_extra_headers_reach_the_server_on_ranged_reads(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    opts = HttpOptions(headers=(NEEDED_HEADER,))
    with HttpSource(f"{nginx.http_url}/needs-header/{name}", opts) as source:
        window = source.random_reads()
        assert window is not None
        window_convert(window, "qcow2", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == raw


def test_ranged_reads_go_to_the_final_url_after_redirects(
    nginx: Nginx, payload: Payload, served: str, tmp_path: Path
) -> None:
    with HttpSource(f"{nginx.http_url}/redirect/{served}", HttpOptions()) as source:
        window = source.random_reads()
        assert window is not None
        window_convert(window, "raw", tmp_path / "out")
    assert_same_raw(tmp_path / "out", payload.data)


def test_insecure_mode_applies_to_ranged_reads(
    nginx: Nginx, qcow2: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = qcow2
    with HttpSource(f"{nginx.https_url}/{name}", HttpOptions(insecure=True)) as source:
        window = source.random_reads()
        assert window is not None
        window_convert(window, "qcow2", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == raw

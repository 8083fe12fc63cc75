"""The real `cdi-importer` against nginx and the bad server: every format, every compression."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import FORMATS, REF_SIZE, Images, MiB, run_importer, same_disk

COMPRESSIONS = ["none", "gz", "xz", "zst", "bz2"]


def virtual_size(path: Path, fmt: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-f", fmt, "--output=json", str(path)], capture_output=True, check=True
    ).stdout
    return int(json.loads(out)["virtual-size"])


@pytest.mark.slow
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_and_compression_lands_as_the_same_raw_disk(
    nginx, images: Images, tmp_path: Path, fmt: str, compression: str
) -> None:
    src = images.make(fmt, compression)
    name = nginx.publish(src, f"m/{src.name}")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--source", "http", "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(dest)
    )
    assert r.returncode == 0, r.stderr
    assert r.report["reason"] == "Completed"
    expected_fmt = FORMATS[fmt][0]
    assert r.report["format"] == expected_fmt
    # VHD rounds sizes to a CHS geometry, as qemu-img does: the disk grows a little.
    virtual = REF_SIZE if expected_fmt != "vpc" else virtual_size(images.make(fmt), "vpc")
    assert r.report["virtual_size"] == virtual
    streamed = fmt in ("raw", "vhdfixed")  # a fixed VHD is raw data with a footer
    assert bool(r.report.get("scratch_used")) is (not streamed and compression != "none")
    assert same_disk(images.reference, dest)
    assert dest.stat().st_size == virtual
    # Sparse: the holes of the reference stay holes.
    assert dest.stat().st_blocks * 512 < REF_SIZE // 2
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".cdi-scratch-*"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "compression"), [("raw", "gz"), ("raw", "none"), ("qcow2", "none"), ("vmdk", "xz")]
)
def test_block_device_target_gets_the_image_and_zeroes_elsewhere(
    nginx, images: Images, loop_device: Path, fmt: str, compression: str
) -> None:
    src = images.make(fmt, compression)
    name = nginx.publish(src, f"b/{src.name}")
    r = run_importer(
        "--source", "http", "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(loop_device)
    )
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, loop_device, prefix_only=True)
    with open(loop_device, "rb") as f:
        f.seek(REF_SIZE)
        rest = f.read()
    assert len(rest) == 4 * MiB  # never resized
    assert rest.count(0) == len(rest)  # old garbage does not survive past the image


def test_file_target_grows_to_the_usable_size(nginx, images: Images, tmp_path: Path) -> None:
    name = nginx.publish(images.make("qcow2"), "grow/disk.qcow2")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--dest", str(dest), "--size", "64Mi"
    )
    assert r.returncode == 0, r.stderr
    # CDI's rule: usable = ceil(0.94 x 64 MiB), rounded down to 1 MiB.
    assert dest.stat().st_size == 60 * MiB
    assert same_disk(images.reference, dest, prefix_only=True)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_too_small_volume_is_refused_before_writing(
    nginx, images: Images, tmp_path: Path, fmt: str
) -> None:
    name = nginx.publish(images.make(fmt, "gz" if fmt == "raw" else "none"), f"small/{fmt}")
    dest = tmp_path / "disk.img"
    r = run_importer("--endpoint", f"{nginx.http_url}/{name}", "--dest", str(dest), "--size", "8Mi")
    assert r.returncode == 3, r.stderr
    assert r.report["reason"] == "ImageTooLarge"
    assert "DataVolume too small to contain image" in str(r.report["message"])
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdkso"])
def test_checksum_mismatch_leaves_no_image(nginx, images: Images, tmp_path: Path, fmt: str) -> None:
    name = nginx.publish(images.make(fmt, "none"), f"sum/{fmt}")
    dest = tmp_path / "disk.img"
    dest.write_bytes(b"previous content")
    r = run_importer(
        "--endpoint",
        f"{nginx.http_url}/{name}",
        "--dest",
        str(dest),
        "--checksum",
        "sha256:" + "0" * 64,
    )
    assert r.returncode == 3, r.stderr
    assert r.report["reason"] == "ChecksumMismatch"
    assert dest.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img"]


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_matching_checksum_is_accepted(nginx, images: Images, tmp_path: Path, fmt: str) -> None:
    src = images.make(fmt, "none")
    digest = hashlib.sha512(src.read_bytes()).hexdigest()
    name = nginx.publish(src, f"oksum/{fmt}")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint",
        f"{nginx.http_url}/{name}",
        "--dest",
        str(dest),
        "--checksum",
        f"sha512:{digest}",
    )
    assert r.returncode == 0, r.stderr
    assert r.report["checksum"] == "sha512"
    assert same_disk(images.reference, dest)


def test_https_with_a_custom_ca_and_basic_auth(nginx, images: Images, tmp_path: Path) -> None:
    name = nginx.publish(images.make("qcow2"), "secure.qcow2")  # /auth/ aliases the docroot
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(Path(nginx.ca_file).read_bytes())
    secrets = tmp_path / "secret"
    secrets.mkdir()
    (secrets / "accessKeyId").write_text(nginx.auth_user)
    (secrets / "secretKey").write_text(nginx.auth_password)
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint",
        f"{nginx.https_url}/auth/{name}",
        "--dest",
        str(dest),
        "--cert-dir",
        str(certs),
        "--secret-dir",
        str(secrets),
    )
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)


def test_wrong_password_is_unauthorized_and_never_echoed(
    nginx, images: Images, tmp_path: Path
) -> None:
    name = nginx.publish(images.make("raw"), "authraw.img")
    secrets = tmp_path / "secret"
    secrets.mkdir()
    (secrets / "accessKeyId").write_text(nginx.auth_user)
    (secrets / "secretKey").write_text("wrong-password-123")
    r = run_importer(
        "--endpoint",
        f"{nginx.http_url}/auth/{name}",
        "--dest",
        str(tmp_path / "d.img"),
        "--secret-dir",
        str(secrets),
    )
    assert r.returncode == 1
    assert r.report["reason"] == "Unauthorized"
    assert "wrong-password-123" not in r.stderr + str(r.report)


def test_untrusted_certificate_is_a_tls_error_unless_insecure(
    nginx, images: Images, tmp_path: Path
) -> None:
    name = nginx.publish(images.make("raw", "gz"), "tls/raw.gz")
    r = run_importer("--endpoint", f"{nginx.https_url}/{name}", "--dest", str(tmp_path / "a.img"))
    assert r.returncode != 0
    assert r.report["reason"] == "TLSError"
    r = run_importer(
        "--endpoint",
        f"{nginx.https_url}/{name}",
        "--dest",
        str(tmp_path / "b.img"),
        "--insecure-tls",
    )
    assert r.returncode == 0, r.stderr


def test_missing_image_is_source_not_found(nginx, tmp_path: Path) -> None:
    r = run_importer("--endpoint", f"{nginx.http_url}/nope.img", "--dest", str(tmp_path / "d.img"))
    assert r.returncode == 1
    assert r.report["reason"] == "SourceNotFound"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("compression", ["none", "gz"])
def test_dropped_connections_are_resumed_byte_identical(
    bad_server, images: Images, tmp_path: Path, compression: str
) -> None:
    src = images.make("raw", compression)
    payload = src.read_bytes()
    bad_server.add("flaky", payload)
    drops = f"{len(payload) // 5},{len(payload) // 2},{len(payload) - 100}"
    dest = tmp_path / "disk.img"
    r = run_importer("--endpoint", bad_server.url("flaky", drop_at=drops), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert r.report["resumes"] == 3
    assert same_disk(images.reference, dest)
    ranges = [q.range for q in bad_server.requests_for("flaky", "GET") if q.range]
    assert ranges == [f"bytes={n}-" for n in map(int, drops.split(","))]


def test_server_without_ranges_restarts_from_zero(
    bad_server, images: Images, tmp_path: Path
) -> None:
    payload = images.make("raw", "gz").read_bytes()
    bad_server.add("norange", payload)
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--endpoint",
        bad_server.url("norange", norange=1, drop_at=len(payload) // 3),
        "--dest",
        str(dest),
    )
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)
    assert len(bad_server.requests_for("norange", "GET")) >= 2


def test_qcow2_from_a_server_without_ranges_goes_through_scratch(
    bad_server, images: Images, tmp_path: Path
) -> None:
    bad_server.add("q", images.make("qcow2").read_bytes())
    dest = tmp_path / "disk.img"
    r = run_importer("--endpoint", bad_server.url("q", norange=1), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert r.report["scratch_used"] is True
    assert "range" in str(r.report["scratch_reason"])
    assert same_disk(images.reference, dest)


def test_blank_image_is_sparse_and_of_the_usable_size(tmp_path: Path) -> None:
    dest = tmp_path / "disk.img"
    r = run_importer("--source", "blank", "--dest", str(dest), "--size", "1Gi")
    assert r.returncode == 0, r.stderr
    assert dest.stat().st_size == -(-(2**30) * 94 // 100) // MiB * MiB  # 962 MiB
    assert dest.stat().st_blocks == 0


def test_hostile_qcow2_with_a_backing_file_is_refused(
    nginx, images: Images, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.qcow2"
    os.system(f"qemu-img create -q -f qcow2 -b /etc/hostname -F raw {evil} 16M")
    name = nginx.publish(evil, "evil/backing.qcow2")
    out = tmp_path / "out"
    out.mkdir()
    r = run_importer("--endpoint", f"{nginx.http_url}/{name}", "--dest", str(out / "disk.img"))
    assert r.returncode == 3
    assert r.report["reason"] == "UnsafeImage"
    assert list(out.iterdir()) == []

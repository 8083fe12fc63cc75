"""The real `cdi-importer` with `--source gcs` against the real GCS emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import Images, run_importer, same_disk


@pytest.mark.parametrize(
    ("fmt", "compression", "scratch"),
    [("qcow2", "none", False), ("raw", "xz", False), ("vmdk", "gz", True)],
)
def test_gcs_object_is_imported_through_a_gs_url(
    gcs_server, images: Images, tmp_path: Path, fmt: str, compression: str, scratch: bool
) -> None:
    src = images.make(fmt, compression)
    gcs_server.put("images", f"e2e/{src.name}", src)
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--source", "gcs", "--endpoint", f"gs://images/e2e/{src.name}", "--dest", str(dest),
        "--scratch-dir", str(tmp_path),
        env={"STORAGE_EMULATOR_HOST": gcs_server.endpoint.removeprefix("http://")},
    )
    assert r.returncode == 0, r.stderr
    assert bool(r.report.get("scratch_used")) is scratch
    assert same_disk(images.reference, dest)


def test_gcs_key_from_cdis_variable_is_used(
    gcs_server, images: Images, tmp_path: Path, token_endpoint
) -> None:
    endpoint, key = token_endpoint
    url = gcs_server.put("private", "disk.qcow2", images.make("qcow2"))
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps(key))
    dest = tmp_path / "out" / "disk.img"
    dest.parent.mkdir()
    r = run_importer(
        "--source", "gcs", "--endpoint", url, "--dest", str(dest),
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(creds)},
    )
    assert r.returncode == 0, r.stderr
    assert same_disk(images.reference, dest)
    assert endpoint.exchanges == 1


def test_gcs_missing_object_and_bucket_have_their_own_reasons(gcs_server, tmp_path: Path) -> None:
    gcs_server.ensure_bucket("present")
    r = run_importer("--source", "gcs", "--endpoint", gcs_server.url("present", "nope.img"),
                     "--dest", str(tmp_path / "a"))
    assert (r.returncode, r.report["reason"]) == (1, "SourceNotFound")
    assert "present/nope.img does not exist" in str(r.report["message"])
    r = run_importer("--source", "gcs", "--endpoint", gcs_server.url("absent", "x.img"),
                     "--dest", str(tmp_path / "b"))
    assert r.report["reason"] == "BucketNotFound"
    assert not list(tmp_path.iterdir())


def test_gcs_unreadable_key_is_a_configuration_error(gcs_server, tmp_path: Path) -> None:
    r = run_importer(
        "--source", "gcs", "--endpoint", gcs_server.url("present", "x.img"),
        "--dest", str(tmp_path / "a"),
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")},
    )
    assert (r.returncode, r.report["reason"]) == (2, "InvalidConfig")
    assert "credentials.json" in str(r.report["message"])


def test_gcs_md5_is_verified_and_catches_bytes_damaged_on_the_wire(
    gcs_server, images: Images, tmp_path: Path
) -> None:
    from tests.peers.gcs import FlippingProxy

    src = images.make("raw")
    gcs_server.put("images", "md5/disk.raw", src)
    good = tmp_path / "good.img"
    r = run_importer("--source", "gcs", "--endpoint", gcs_server.url("images", "md5/disk.raw"),
                     "--dest", str(good))
    assert r.returncode == 0, r.stderr
    assert r.report.get("checksum") == "md5"  # the store's own digest was checked
    proxy = FlippingProxy(gcs_server.port, 4 << 20)
    try:
        bad = tmp_path / "bad" / "disk.img"
        bad.parent.mkdir()
        r = run_importer("--source", "gcs", "--endpoint",
                         f"http://127.0.0.1:{proxy.port}/images/md5/disk.raw", "--dest", str(bad))
    finally:
        proxy.close()
    assert proxy.flips >= 1
    assert (r.returncode, r.report["reason"]) == (3, "ChecksumMismatch"), r.stderr
    assert not bad.exists()

"""The real `cdi-importer` reading from moto's S3 server, Debian's docker-registry, and tars."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import Images, run_importer, same_disk
from tests.peers.registry import OciLayout, disk_entries, file_entry


def s3_env(s3) -> dict[str, str]:
    return {"IMPORTER_ACCESS_KEY_ID": s3.access_key, "IMPORTER_SECRET_KEY": s3.secret_key}


@pytest.mark.parametrize(
    ("fmt", "compression", "scratch"),
    [("qcow2", "none", False), ("raw", "gz", False), ("vmdk", "zst", True)],
)
def test_s3_object_is_imported(
    s3_server, images: Images, tmp_path: Path, fmt: str, compression: str, scratch: bool
) -> None:
    src = images.make(fmt, compression)
    url = s3_server.put("images", f"e2e/{src.name}", src)
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--source", "s3", "--endpoint", url, "--dest", str(dest), env=s3_env(s3_server)
    )
    assert r.returncode == 0, r.stderr
    assert bool(r.report.get("scratch_used")) is scratch
    assert same_disk(images.reference, dest)


def test_s3_missing_key_and_bucket_have_their_own_reasons(s3_server, tmp_path: Path) -> None:
    s3_server.ensure_bucket("present")
    r = run_importer(
        "--source",
        "s3",
        "--endpoint",
        s3_server.url("present", "nope.img"),
        "--dest",
        str(tmp_path / "a"),
        env=s3_env(s3_server),
    )
    assert (r.returncode, r.report["reason"]) == (1, "SourceNotFound")
    r = run_importer(
        "--source",
        "s3",
        "--endpoint",
        s3_server.url("absent-bucket", "x.img"),
        "--dest",
        str(tmp_path / "b"),
        env=s3_env(s3_server),
    )
    assert r.report["reason"] == "BucketNotFound"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("layer", "scratch"), [("gzip", True), ("none", False)])
def test_container_disk_from_a_registry(
    registry, images: Images, tmp_path: Path, layer: str, scratch: bool
) -> None:
    layout = OciLayout(tmp_path / "layout")
    desc = layout.image(
        [
            [
                file_entry("etc/os-release", b"ID=test\n"),
                *disk_entries(images.make("qcow2"), "disk.qcow2"),
            ]
        ],
        compression=layer,
    )
    layout.tag(desc, "v1")
    url = registry.push(layout, "v1", f"e2e/disk-{layer}")
    dest = tmp_path / "disk.img"
    r = run_importer(
        "--source",
        "registry",
        "--endpoint",
        url,
        "--dest",
        str(dest),
        env={"IMPORTER_INSECURE_REGISTRIES": registry.host},
    )
    assert r.returncode == 0, r.stderr
    assert r.report["format"] == "qcow2"
    assert bool(r.report.get("scratch_used")) is scratch
    assert same_disk(images.reference, dest)


def test_plain_http_registry_is_refused_unless_listed_insecure(
    registry, images: Images, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "layout")
    layout.tag(layout.image([disk_entries(images.make("raw"))]), "v1")
    url = registry.push(layout, "v1", "e2e/insecure")
    r = run_importer("--source", "registry", "--endpoint", url, "--dest", str(tmp_path / "d.img"))
    assert r.returncode != 0
    assert r.report["reason"] == "TLSError"
    assert "insecure" in str(r.report["message"]).lower()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_content_is_extracted_into_the_directory(nginx, tmp_path: Path) -> None:
    archive = tmp_path / "content.tar.gz"
    archive.write_bytes(_tar_gz({"a/b.txt": b"hello", "c.bin": bytes(1000)}))
    name = nginx.publish(archive, "archives/content.tar.gz")
    dest = tmp_path / "data"
    dest.mkdir()
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--content-type", "archive", "--dest", str(dest)
    )
    assert r.returncode == 0, r.stderr
    assert (dest / "a" / "b.txt").read_bytes() == b"hello"
    assert (dest / "c.bin").stat().st_size == 1000
    assert (dest / "a" / "b.txt").stat().st_mode & 0o777 == 0o640


def test_hostile_archive_is_refused_and_leaves_nothing(nginx, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_gz({"ok.txt": b"x", "../escape.txt": b"y"}))
    name = nginx.publish(archive, "archives/evil.tar.gz")
    dest = tmp_path / "data"
    dest.mkdir()
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--content-type", "archive", "--dest", str(dest)
    )
    assert r.returncode == 3
    assert r.report["reason"] == "UnsafeArchive"
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()

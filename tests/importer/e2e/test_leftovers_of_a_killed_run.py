"""The real `cdi-importer` starting where a killed run left its temporary files behind."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.importer.e2e.conftest import Images, run_importer, same_disk, start_importer
from tests.killedrun import plant_decoys, plant_leftovers, plant_staging_tree

MiB = 1 << 20


def test_leftovers_are_removed_and_the_disk_import_succeeds(
    nginx,  # type: ignore[no-untyped-def]
    images: Images,
    tmp_path: Path,
) -> None:
    vol, scratch = tmp_path / "vol", tmp_path / "scratch"
    vol.mkdir()
    scratch.mkdir()
    outside = tmp_path / "precious"
    outside.write_bytes(b"must stay")
    decoys = plant_decoys(vol, outside)
    planted = plant_leftovers(vol, "disk.img")
    (scratch / ".cdi-scratch-abcdefgh.img").write_bytes(os.urandom(1 << 20))
    name = nginx.publish(images.make("qcow2", "gz"), f"leftovers/{tmp_path.name}.qcow2.gz")
    r = run_importer(
        "--endpoint",
        f"{nginx.http_url}/{name}",
        "--dest",
        str(vol / "disk.img"),
        "--scratch-dir",
        str(scratch),
        env={"IMPORTER_LOG_LEVEL": "INFO"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.report["scratch_used"] is True
    assert same_disk(images.reference, vol / "disk.img")
    assert sorted(vol.iterdir()) == sorted([*decoys, vol / "disk.img"])
    assert list(scratch.iterdir()) == []
    assert outside.read_bytes() == b"must stay"
    for path in planted:
        assert f"removed leftover of an earlier run path={path}" in r.stderr


def test_a_staging_tree_with_read_only_directories_is_removed_before_an_archive_import(
    nginx,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "lost+found").mkdir()
    staging = plant_staging_tree(dest)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    archive = tmp_path / "content.tar.gz"
    archive.write_bytes(buf.getvalue())
    name = nginx.publish(archive, f"leftovers/{tmp_path.name}.tar.gz")
    r = run_importer(
        "--endpoint", f"{nginx.http_url}/{name}", "--content-type", "archive", "--dest", str(dest)
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not staging.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["hello.txt", "lost+found"]
    assert (dest / "hello.txt").read_bytes() == b"hello"


def test_what_a_sigkilled_import_leaves_is_gone_after_the_next_run(
    bad_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Not planted: a real run, killed while downloading its scratch copy. Its scratch
    file has a random name, so the next run would not overwrite it: only the sweep helps."""
    vol = tmp_path / "vol"
    vol.mkdir()
    # Random data, so that the gzip is several of the source's 1 MiB reads long and the
    # download is well under way when the server stalls.
    raw = tmp_path / "random.raw"
    raw.write_bytes(os.urandom(12 * MiB))
    qcow2 = tmp_path / "random.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    gz = gzip.compress(qcow2.read_bytes(), 1)
    bad_server.add("killed", gz)
    stalls = bad_server.url("killed", stall_at=len(gz) - MiB, stall=60)
    proc = start_importer("--endpoint", stalls, "--dest", str(vol / "disk.img"))
    scratch: list[Path] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            scratch = list(vol.glob(".cdi-scratch-*.img"))
            if scratch and scratch[0].stat().st_size > 0:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert len(scratch) == 1 and scratch[0].exists(), "the import did not get going"
    r = run_importer(
        "--endpoint",
        bad_server.url("killed"),
        "--dest",
        str(vol / "disk.img"),
        env={"IMPORTER_LOG_LEVEL": "INFO"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"removed leftover of an earlier run path={scratch[0]}" in r.stderr
    assert sorted(p.name for p in vol.iterdir()) == ["disk.img"]
    assert same_disk(raw, vol / "disk.img")

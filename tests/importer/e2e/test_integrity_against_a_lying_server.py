"""The bytes we check are the bytes we write, against a server that lies on purpose.

The real `cdi-importer` imports from the bad server, which serves one image to some
readers and another to the rest: clean to the first reader and hostile to the next ones,
good bytes to plain GETs and others to ranged GETs, with a validator that lies (the same
ETag for both) or tells the truth (a new ETag), or with no validator at all. The hostile
image is either a backing-file variant (a qcow2 whose header names a local file, a VMDK
whose descriptor names a parent) or the same image with four bytes changed.

Whatever the mix: the import never opens the backing file (its atime stays in the past);
with a checksum it either fails or writes exactly the clean disk; a failure has a precise
reason and leaves nothing at the destination; a backing-file variant never yields a disk
that differs from the clean one. Dropped connections during a ranged conversion are
resumed, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.importer.e2e.conftest import Images, compress, run_importer
from tests.peers.badserver import BadServer

MiB = 1 << 20
PAST = 1_000_000

# What a refused import may say, and nothing else: a precise reason, never a crash.
REFUSALS = {
    "SourceChanged",
    "UnsafeImage",
    "ChecksumMismatch",
    "InvalidImage",
    "CorruptImage",
    "UnsupportedFormat",
    "ServerError",
}


@dataclass(frozen=True)
class Variant:
    name: str
    clean: Path
    hostile: Path
    fmt: str
    backing: Path | None
    """The local file the hostile image points at (never to be opened), if any."""


def _qemu_map_data_offset(image: Path, fmt: str) -> int:
    """Host offset of the first allocated data byte of `image` (qemu-img map)."""
    out = subprocess.run(
        ["qemu-img", "map", "-f", fmt, "--output=json", str(image)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for extent in json.loads(out):
        if extent.get("data") and "offset" in extent:
            return int(extent["offset"]) + 100
    raise AssertionError(f"no data in {image}")


def _tampered(clean: Path, fmt: str, out: Path) -> Path:
    shutil.copyfile(clean, out)
    offset = 100 if fmt == "raw" else _qemu_map_data_offset(clean, fmt)
    with out.open("r+b") as f:
        f.seek(offset)
        original = f.read(4)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in original))
    return out


def _qcow2_with_backing(clean: Path, backing: Path, out: Path) -> Path:
    shutil.copyfile(clean, out)
    subprocess.run(
        ["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", str(backing), "-F", "raw", str(out)],
        check=True,
    )
    return out


def _vmdk_with_parent_hint(clean: Path, backing: Path, out: Path) -> Path:
    data = bytearray(clean.read_bytes())
    desc_sector, desc_sectors = struct.unpack_from("<QQ", data, 28)
    start, size = desc_sector * 512, desc_sectors * 512
    text_end = data.index(b"\0", start, start + size)
    line = f'parentFileNameHint="{backing}"\n'.encode()
    assert text_end + len(line) < start + size, "no room in the embedded descriptor"
    data[text_end : text_end + len(line)] = line
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def variants(images: Images, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Variant]:
    d = tmp_path_factory.mktemp("lying-server")
    backing = d / "local-secret.raw"
    backing.write_bytes(b"LOCAL FILE " * (1 << 16))
    out: dict[str, Variant] = {}
    for name, fmt in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhd", "vpc"), ("raw", "raw")):
        clean = images.make(name)
        out[f"{name}-tampered"] = Variant(
            f"{name}-tampered", clean, _tampered(clean, fmt, d / f"tampered.{name}"), fmt, None
        )
    qcow2 = images.make("qcow2")
    out["qcow2-backing"] = Variant(
        "qcow2-backing", qcow2, _qcow2_with_backing(qcow2, backing, d / "b.qcow2"), "qcow2",
        backing,
    )
    vmdk = images.make("vmdk")
    out["vmdk-backing"] = Variant(
        "vmdk-backing", vmdk, _vmdk_with_parent_hint(vmdk, backing, d / "b.vmdk"), "vmdk",
        backing,
    )
    for v in out.values():
        assert v.clean.stat().st_size == v.hostile.stat().st_size, v.name  # same-sized lie
    return out


@pytest.fixture(scope="module")
def clean_raw(images: Images) -> bytes:
    return images.reference.read_bytes()


# The server's lies, as bad-server query parameters (see tests/peers/badserver.py).
MODES: dict[str, dict[str, object]] = {
    # A lying validator: every answer carries the clean image's ETag.
    "second-reader-lied-to": {"alt_from": 2, "keep_etag": 1},
    "third-reader-lied-to": {"alt_from": 3, "keep_etag": 1},
    "fifth-reader-lied-to": {"alt_from": 5, "keep_etag": 1},
    "ranged-reads-lied-to": {"alt_ranged": 1, "keep_etag": 1},
    "every-other-read-lied-to": {"alt_every": 2, "keep_etag": 1},
    # An honest server whose object changed mid-import: a new ETag.
    "changed-mid-import": {"alt_from": 3},
    # No validator at all.
    "no-validator": {"alt_from": 3, "novalidator": 1},
}

# Every mode also cuts the first response at 40%, so the transfer resumes or re-reads.
DROP = {"drop_first_pct": 40}


def _serve(bad: BadServer, v: Variant, compression: str, tmp: Path) -> tuple[str, str, str]:
    """Register the clean and hostile payloads; returns (clean name, hostile name, sha256)."""
    clean, hostile = v.clean, v.hostile
    if compression != "none":
        work = tmp / "compressed"
        work.mkdir(exist_ok=True)
        clean = compress(shutil.copyfile(clean, work / f"clean-{v.clean.name}"), compression)
        hostile = compress(shutil.copyfile(hostile, work / f"hostile-{v.clean.name}"), compression)
    cname, hname = f"clean-{v.name}", f"hostile-{v.name}"
    bad.add(cname, clean.read_bytes())
    bad.add(hname, hostile.read_bytes())
    return cname, hname, hashlib.sha256(clean.read_bytes()).hexdigest()


def _check(
    r: object, out: Path, v: Variant, clean_raw: bytes, *, checksum: bool
) -> None:
    rc, report = r.returncode, r.report  # type: ignore[attr-defined]
    if v.backing is not None:
        assert os.stat(v.backing).st_atime == PAST, "the backing file was opened"
    if rc != 0:
        assert report.get("reason") in REFUSALS, (report, r.stderr[-1500:])  # type: ignore[attr-defined]
        assert list(out.parent.iterdir()) == [], "a failed import left something behind"
        return
    got = out.read_bytes()[: len(clean_raw)]
    if checksum or v.backing is not None:
        # Verified bytes only; a header-only lie can never change the disk.
        assert got == clean_raw, report
    out.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("checksum", [True, False], ids=["checksum", "no-checksum"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "variant", ["qcow2-backing", "vmdk-backing", "qcow2-tampered", "vmdk-tampered",
                "vhd-tampered", "raw-tampered"],
)  # fmt: skip
@pytest.mark.parametrize(
    "compression", ["none", "gz"], ids=["ranged-or-streamed", "compressed-scratch-or-streamed"]
)
def test_a_lying_server_never_gets_unverified_bytes_into_the_volume(
    bad_server: BadServer,
    variants: dict[str, Variant],
    clean_raw: bytes,
    tmp_path: Path,
    variant: str,
    mode: str,
    checksum: bool,
    compression: str,
) -> None:
    v = variants[variant]
    if v.backing is not None:
        os.utime(v.backing, (PAST, os.stat(v.backing).st_mtime))
    cname, hname, sha = _serve(bad_server, v, compression, tmp_path)
    url = bad_server.url(cname, alt=hname, **MODES[mode], **DROP)
    dest = tmp_path / "volume"
    dest.mkdir()
    # Small ranged reads: two cached 64 KiB blocks make qemu-img re-read evicted blocks,
    # so a server answering the same range differently is met, as on a large image.
    args = ["--endpoint", url, "--dest", str(dest / "disk.img"), "--size", "64Mi",
            "--range-block-size", "64Ki"]  # fmt: skip
    if checksum:
        args += ["--checksum", f"sha256:{sha}"]
    r = run_importer(*args, timeout=180)
    _check(r, dest / "disk.img", v, clean_raw, checksum=checksum)
    if checksum and r.returncode == 0:
        assert r.report["checksum"] == "sha256"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhd", "vhdx", "vdi", "raw"])
@pytest.mark.parametrize("compression", ["none", "gz"])
def test_a_connection_dropped_mid_conversion_is_resumed_not_fatal(
    bad_server: BadServer,
    images: Images,
    clean_raw: bytes,
    tmp_path: Path,
    fmt: str,
    compression: str,
) -> None:
    """The server cuts the first response for the file at 30%: every path completes."""
    image = compress(images.make(fmt), compression)
    bad_server.add("disk", image.read_bytes())
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    dest = tmp_path / "volume"
    dest.mkdir()
    r = run_importer(
        "--endpoint", bad_server.url("disk", drop_first_pct=30),
        "--dest", str(dest / "disk.img"), "--size", "64Mi", "--checksum", f"sha256:{sha}",
    )  # fmt: skip
    assert r.returncode == 0, (r.report, r.stderr[-2000:])
    assert r.report["resumes"] >= 1, r.report
    assert (dest / "disk.img").read_bytes()[: len(clean_raw)] == clean_raw
    if fmt != "raw" and compression == "none":
        assert r.report["scratch_used"] is False
        assert "ranged" in str(r.report.get("read", r.report)), r.report


@pytest.mark.slow
def test_a_changed_object_during_a_ranged_conversion_is_source_changed(
    bad_server: BadServer, variants: dict[str, Variant], tmp_path: Path
) -> None:
    """An honest server whose object changes after inspection: 412 to the pinned reads."""
    v = variants["qcow2-tampered"]
    cname, hname, _ = _serve(bad_server, v, "none", tmp_path)
    dest = tmp_path / "volume"
    dest.mkdir()
    r = run_importer(
        "--endpoint", bad_server.url(cname, alt=hname, alt_from=4),
        "--dest", str(dest / "disk.img"), "--size", "64Mi",
    )  # fmt: skip
    assert r.returncode == 1, r.report  # retryable: the next attempt may see one version
    assert r.report["reason"] == "SourceChanged", r.report
    assert list(dest.iterdir()) == []
    conditional = [q for q in bad_server.requests_for(cname, "GET") if q.range != "bytes=0-0"]
    assert any("If-Match" in q.headers for q in conditional)

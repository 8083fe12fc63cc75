"""Make the seed inputs of every target from real tools: `python3 -m fuzz.seeds OUTDIR`.

Disk images come from qemu-img (every format and subformat we inspect, and the hostile
ones we refuse), archives from Python's tarfile and GNU tar, compressed streams from
gzip/pigz/xz/zstd/bzip2. Run it when a parser learns a new format, then merge the output
into the corpus with `hack/fuzz --seeds DIR` so only inputs with new coverage are kept.
The committed corpus is what counts; this script is how its first seeds were made.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import zstandard

from fuzz import images
from fuzz.formats import one_input as formats_one_input  # noqa: F401 - import check only
from importer.errors import ImportFailure
from importer.formats import HEAD_SIZE, detect, inspect

KiB, MiB = 1024, 1024 * 1024
SECTOR = 512
MAX_SPARSE = 256 * KiB
PLAIN_HEAD = 64 * KiB
UNKNOWN_SIZE = frozenset(
    {
        "qcow2-v3.qcow2",
        "vhdx-data.vhdx",
        "vhd-fixed.vhd",
        "vmdk-stream.vmdk",
        "vdi-dynamic.vdi",
        "vhd-dynamic.vhd",
        "cd.iso",
    }
)
"""Images also seeded as streams of unknown length (no file size for `inspect`)."""


def _qemu_img(*args: str) -> None:
    done = subprocess.run(["qemu-img", *args], check=False, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"qemu-img {args[0]}: {done.stderr.strip()}")


def _outcome(data: bytes) -> str:
    image = images.Image.decode(data)
    try:
        fmt = detect(image.read_at(0, HEAD_SIZE))
        return repr(inspect(fmt, image.read_at, image.known_size))
    except ImportFailure as failure:
        return f"{failure.reason}: {failure.message}"


def _nonzero_extents(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Runs of non-zero sectors, at most MAX_SPARSE bytes in all (the headers come first)."""
    kept, start = 0, None
    for at in range(0, len(data) + SECTOR, SECTOR):
        nonzero = at < len(data) and any(data[at : at + SECTOR])
        if nonzero and start is None:
            start = at
        if not nonzero and start is not None:
            piece = data[start:at][: MAX_SPARSE - kept]
            kept += len(piece)
            yield start, piece
            start = None
            if kept >= MAX_SPARSE:
                return


def image_seeds(path: Path) -> dict[str, bytes]:
    """The sparse form of an image and, when its headers fit, its plain first 64 KiB."""
    data = path.read_bytes()
    full = _outcome(images.sparse(len(data), iter([(0, data)])))
    seeds = {}
    compact = images.sparse(len(data), _nonzero_extents(data))
    if _outcome(compact) == full:
        seeds[f"{path.name}.sparse"] = compact
    plain = data[:PLAIN_HEAD]
    if _outcome(plain) == full:
        seeds[f"{path.name}.head"] = plain
    if path.name in UNKNOWN_SIZE:
        seeds[f"{path.name}.nosize"] = images.sparse(None, _nonzero_extents(data))
    if not seeds:
        print(f"seeds: {path.name}: no small form keeps its outcome ({full})", file=sys.stderr)
    return seeds


def _reference(path: Path, size: int = 8 * MiB) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset in (0, 64 * KiB + 512, 1 * MiB, size - 4 * KiB):
            f.seek(offset)
            f.write((f"<cdi-ref offset={offset}>".encode() * 200)[: 4 * KiB])
    return path


def format_seeds(work: Path) -> dict[str, bytes]:
    ref = _reference(work / "ref.raw")
    made: list[Path] = []

    def create(
        name: str, fmt: str, *opts: str, size: str = "64M", pre: tuple[str, ...] = ()
    ) -> None:
        path = work / name
        _qemu_img(
            "create",
            "-q",
            *pre,
            "-f",
            fmt,
            *(["-o", ",".join(opts)] if opts else []),
            str(path),
            size,
        )
        made.append(path)

    def convert(name: str, fmt: str, *opts: str, compress: bool = False) -> None:
        path = work / name
        args = ["convert", "-q", "-O", fmt, *(["-c"] if compress else [])]
        _qemu_img(*args, *(["-o", ",".join(opts)] if opts else []), str(ref), str(path))
        made.append(path)

    secret = ("--object", "secret,id=s0,data=fuzz")
    create("qcow2-v2.qcow2", "qcow2", "compat=0.10")
    create("qcow2-v3.qcow2", "qcow2", "compat=1.1")
    create("qcow2-zstd.qcow2", "qcow2", "compression_type=zstd")
    create("qcow2-extl2.qcow2", "qcow2", "extended_l2=on", "cluster_size=128k")
    create("qcow2-c512.qcow2", "qcow2", "cluster_size=512")
    create("qcow2-c2m.qcow2", "qcow2", "cluster_size=2M", size="8M")
    create("qcow2-refcount1.qcow2", "qcow2", "refcount_bits=1", "lazy_refcounts=on")
    convert("qcow2-compressed.qcow2", "qcow2", compress=True)
    convert("qcow2-data.qcow2", "qcow2", "compat=0.10")
    create("qcow2-backing.qcow2", "qcow2", "backing_file=qcow2-v3.qcow2", "backing_fmt=qcow2")
    create("qcow2-datafile.qcow2", "qcow2", f"data_file={work / 'ext.raw'}")
    create(
        "qcow2-luks.qcow2",
        "qcow2",
        "encrypt.format=luks",
        "encrypt.key-secret=s0",
        "encrypt.iter-time=10",
        size="8M",
        pre=secret,
    )
    create("vmdk-sparse.vmdk", "vmdk", "subformat=monolithicSparse")
    convert("vmdk-stream.vmdk", "vmdk", "subformat=streamOptimized")
    convert("vmdk-sparse-data.vmdk", "vmdk", "subformat=monolithicSparse")
    create("vmdk-flat.vmdk", "vmdk", "subformat=monolithicFlat", size="1M")
    create("vmdk-backing.vmdk", "vmdk", "backing_file=vmdk-sparse.vmdk", "backing_fmt=vmdk")
    create("vhd-dynamic.vhd", "vpc", "subformat=dynamic")
    convert("vhd-dynamic-data.vhd", "vpc", "subformat=dynamic")
    create("vhd-fixed.vhd", "vpc", "subformat=fixed", size="4M")
    create("vhd-forcesize.vhd", "vpc", "subformat=dynamic", "force_size=on", size="63M")
    create("vhdx-dynamic.vhdx", "vhdx", "subformat=dynamic")
    convert("vhdx-data.vhdx", "vhdx", "block_size=1M")
    create("vhdx-fixed.vhdx", "vhdx", "subformat=fixed", size="4M")
    create("vdi-dynamic.vdi", "vdi")
    create("vdi-static.vdi", "vdi", "static=on", size="8M")
    create("qed.qed", "qed", size="8M")
    create("parallels.img", "parallels", size="8M")
    create("luks.luks", "luks", "key-secret=s0", "iter-time=10", size="1M", pre=secret)
    iso = work / "cd.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(ref)],
        check=True,
        capture_output=True,
    )
    made.append(iso)

    made += _patched(work)
    seeds: dict[str, bytes] = {}
    for path in made:
        seeds.update(image_seeds(path))
    # Heads that `detect` names and refuses, and a dmg trailer: a few bytes each.
    koly = b"koly" + (4).to_bytes(4, "big") + (512).to_bytes(4, "big")
    seeds["dmg.tail"] = images.sparse(64 * KiB, iter([(64 * KiB - 512, koly + bytes(500))]))
    seeds["raw.zeros"] = bytes(4096)
    seeds["gzip.head"] = gzip.compress(b"disk" * 100)
    seeds["xz.head"] = lzma.compress(b"disk" * 100)
    seeds["zstd.head"] = zstandard.ZstdCompressor().compress(b"disk" * 100)
    seeds["bzip2.head"] = bz2.compress(b"disk" * 100)
    seeds["tar.head"] = _tar([_file("disk.img", b"x" * 100)])
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("disk.img", b"x" * 100)
    seeds["zip.head"] = zipped.getvalue()
    for magic in (
        b"Rar!\x1a\x07\x00",
        b"7z\xbc\xaf\x27\x1c",
        b"COWD",
        b"\x04\x22\x4d\x18",
        b"Bochs Virtual HD Image",
        b"#!/bin/sh\n#V2.0 Format\n",
        b"QFI\xfb\0\0\0\1",
    ):
        seeds[f"magic-{hashlib.sha256(magic).hexdigest()[:8]}.head"] = magic + bytes(512)
    return seeds


def _patched(work: Path) -> list[Path]:
    """Hostile variants qemu-img will not write: real images with one field changed.

    Each hides the hostile part behind a check that would otherwise catch it first (an
    external data file named only by its header extension, an encryption extension with
    crypt_method 0, a VHDX parent locator without the has-parent flag), so the fuzzer
    starts next to the refusals it would otherwise need many lucky mutations to reach.
    """
    out = []

    def patch(src: str, name: str, edit: Callable[[bytearray], None]) -> None:
        data = bytearray((work / src).read_bytes())
        edit(data)
        (work / name).write_bytes(bytes(data))
        out.append(work / name)

    def clear_incompat_data_file(d: bytearray) -> None:
        d[79] &= ~0x04  # incompatible_features (be64 at 72), bit 2: external data file

    def clear_crypt_method(d: bytearray) -> None:
        d[32:36] = bytes(4)

    def parent_locator(d: bytearray) -> None:
        page83 = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746").bytes_le
        locator = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C").bytes_le
        at = d.find(page83, 3 * MiB)
        d[at : at + 16] = locator

    patch("qcow2-datafile.qcow2", "qcow2-datafile-ext-only.qcow2", clear_incompat_data_file)
    patch("qcow2-luks.qcow2", "qcow2-luks-ext-only.qcow2", clear_crypt_method)
    patch("vhdx-dynamic.vhdx", "vhdx-parent-locator.vhdx", parent_locator)
    return out


# -- tar streams ---------------------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes, mode: int = 0o644, **pax: str) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1700000000
    info.pax_headers = dict(pax)
    return info, data


def _entry(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info, None


def _tar(members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _gnu_tar(work: Path, name: str, *args: str) -> bytes:
    out = work / f"{name}.tar"
    subprocess.run(["tar", "-C", str(work), "-cf", str(out), *args], check=True)
    return out.read_bytes()


def archive_seeds(work: Path) -> dict[str, bytes]:
    long = "d/" + "n" * 120 + "/" + "f" * 120
    plain = [
        _entry("./", tarfile.DIRTYPE),
        _entry("dir", tarfile.DIRTYPE, mode=0o750),
        _file("dir/a.txt", b"hello\n"),
        _file("run.sh", b"#!/bin/sh\n", 0o4755),
        _entry("dir/link", tarfile.SYMTYPE, "a.txt"),
        _entry("hard", tarfile.LNKTYPE, "dir/a.txt"),
    ]
    seeds = {
        "pax.tar": _tar(plain),
        "gnu.tar": _tar(plain, tarfile.GNU_FORMAT),
        "ustar.tar": _tar(plain[:4], tarfile.USTAR_FORMAT),
        "gnu-longname.tar": _tar(
            [_file(long, b"x"), _entry("l", tarfile.SYMTYPE, long)], tarfile.GNU_FORMAT
        ),
        "pax-longname.tar": _tar([_file(long, b"x", mtime="1700000000.5", uname="u" * 40)]),
        "pax-global.tar": _tar([_file("g", b"x")], tarfile.PAX_FORMAT)[:0] + _pax_global(),
        "empty.tar": bytes(1024),
        "escape-dotdot.tar": _tar([_file("../evil", b"x")]),
        "escape-abs.tar": _tar([_file("/etc/evil", b"x")]),
        "escape-symlink.tar": _tar(
            [_entry("l", tarfile.SYMTYPE, "../../etc"), _file("l/passwd", b"x")]
        ),
        "symlink-abs.tar": _tar([_entry("l", tarfile.SYMTYPE, "/etc/passwd")]),
        "hardlink-outside.tar": _tar([_entry("h", tarfile.LNKTYPE, "/etc/passwd")]),
        "duplicate.tar": _tar([_file("a", b"1"), _file("a", b"2")]),
        "device.tar": _tar([_entry("dev", tarfile.CHRTYPE), _entry("fifo", tarfile.FIFOTYPE)]),
        "too-large.tar": _tar([_file("big", b"\0" * (40 * KiB))]),
        "truncated.tar": _tar([_file("a", b"y" * 3000)])[:2048],
        "dir-over-file.tar": _tar([_file("a", b"1"), _entry("a", tarfile.DIRTYPE)]),
        "through-file.tar": _tar([_file("a", b"1"), _file("a/b", b"2")]),
        "lost-found.tar": _tar(
            [_entry("lost+found", tarfile.DIRTYPE, mode=0o700), _file("lost+found/f", b"x")]
        ),
        "lost-found-file.tar": _tar([_file("lost+found", b"not a dir")]),
        "readonly-dir.tar": _tar(
            [_entry("ro", tarfile.DIRTYPE, mode=0o500), _file("ro/f", b"x", 0o400)]
        ),
    }
    # GNU tar's own encodings: sparse members (--sparse), long names, incremental dirs.
    src = work / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data")
    with (src / "sparse").open("wb") as f:
        f.truncate(64 * KiB)
        f.seek(32 * KiB)
        f.write(b"middle")
    os.symlink("sub/f", src / "link")
    seeds["gnutar-sparse.tar"] = _gnu_tar(work, "s", "--format=gnu", "--sparse", "tree")
    seeds["gnutar-posix-sparse.tar"] = _gnu_tar(work, "p", "--format=posix", "--sparse", "tree")
    seeds["gnutar-v7.tar"] = _gnu_tar(work, "v", "--format=v7", "tree/sub", "tree/link")
    seeds["gnutar-oldgnu.tar"] = _gnu_tar(work, "o", "--format=oldgnu", "tree/sub")
    return seeds


def _pax_global() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf,
        mode="w",
        format=tarfile.PAX_FORMAT,
        pax_headers={"comment": "global", "mtime": "1"},
    ) as tar:
        info, data = _file("f", b"x", path="renamed/by/pax", size="1")
        tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


def layer_seeds() -> dict[str, bytes]:
    disk = b"QFI\xfb" + bytes(60)
    layers = {
        "disk.tar": _tar([_entry("disk", tarfile.DIRTYPE), _file("disk/disk.img", disk)]),
        "disk-docker.tar": _tar([_file("disk/x.qcow2", disk, 0o444)], tarfile.GNU_FORMAT),
        "whiteout.tar": _tar([_file("disk/.wh.disk.img", b""), _file("disk/other.img", disk)]),
        "opaque.tar": _tar([_file("disk/.wh..wh..opq", b""), _file("disk/new.img", disk)]),
        "whiteout-dir.tar": _tar([_file(".wh.disk", b""), _file("etc/os-release", b"ID=x")]),
        "two-disks.tar": _tar([_file("disk/a.img", disk), _file("disk/b.img", disk)]),
        "disk-symlink.tar": _tar([_entry("disk/l.img", tarfile.SYMTYPE, "/etc/passwd")]),
        "disk-hardlink.tar": _tar([_file("x", disk), _entry("disk/h.img", tarfile.LNKTYPE, "x")]),
        "climb.tar": _tar([_file("disk/../../x", disk)]),
        "absolute.tar": _tar([_file("/disk/x.img", disk)]),
        "whiteout-climb.tar": _tar([_file("disk/.wh...", b""), _file("disk/a.img", disk)]),
        "no-disk.tar": _tar([_file("etc/hostname", b"h\n")]),
    }
    seeds = dict(layers)
    for name in ("disk.tar", "whiteout.tar", "two-disks.tar"):
        seeds[name + ".gz"] = gzip.compress(layers[name], mtime=0)
        seeds[name + ".zst"] = zstandard.ZstdCompressor().compress(layers[name])
    seeds["disk.tar.gz-multimember"] = gzip.compress(
        layers["disk.tar"][:1024], mtime=0
    ) + gzip.compress(layers["disk.tar"][1024:], mtime=0)
    return seeds


# -- manifests -----------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_seeds() -> dict[str, bytes]:
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": _digest(b"{}"),
        "size": 2,
    }
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": _digest(b"layer"),
        "size": 5,
        "annotations": {"k": "v"},
    }
    oci = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    }
    docker = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": dict(config, mediaType="application/vnd.docker.container.image.v1+json"),
        "layers": [
            dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip"),
            dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar+zstd"),
        ],
    }

    def entry(arch: str, os_: str = "linux", **extra: str) -> dict[str, object]:
        return {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _digest(arch.encode()),
            "size": 500,
            "platform": {"architecture": arch, "os": os_, **extra},
        }

    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry("amd64"),
            entry("arm64", variant="v8"),
            entry("s390x"),
            entry("amd64", "windows"),
        ],
    }
    docker_list = dict(index, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")
    bare = {"schemaVersion": 2, "manifests": [entry("arm64")]}
    docs = {
        "oci-manifest": (2, oci),
        "docker-manifest": (4, docker),
        "oci-index": (3, index),
        "docker-list": (5, docker_list),
        "bare-index": (0, bare),
        "no-layers": (2, dict(oci, layers=[])),
        "schema1": (0, {"schemaVersion": 1}),
    }
    seeds = {}
    for name, (ctype, doc) in docs.items():
        body = json.dumps(doc, indent=3).encode()
        seeds[f"{name}.json"] = bytes([ctype, 0]) + body
        seeds[f"{name}-digest.json"] = bytes([ctype, 1]) + body
    return seeds


def text_seeds() -> dict[str, bytes]:
    lines = [
        (0, "bytes 0-1023/4096"),
        (0, "bytes 100-99/*"),
        (0, "BYTES 5-10/*"),
        (1, "Authorization: Bearer abc"),
        (1, "X-Bad Name: v"),
        (1, "Cookie:\tx=1"),
        (2, "Content-Length: 12\nTransfer-Encoding: identity"),
        (2, "Content-Length: -1"),
        (2, "Transfer-Encoding: chunked\nContent-Length: 5"),
        (3, 'ETag: "abc"\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT'),
        (3, 'ETag: W/"x"'),
        (4, "https://user:secretpass@example.com:8443/a/b.img?X-Amz-Signature=abc#frag"),
        (4, "http://[::1]:80/x"),
        (4, "s3://bucket/key"),
        (5, "4096\nbytes=0-1023"),
        (5, "4096\nbytes=100-"),
        (5, "10\nbytes=20-30"),
        (6, 'Bearer realm="https://auth.example/token",service="registry",scope="repo:pull"'),
        (6, 'Basic realm="registry"'),
        (7, "sha256:" + "ab" * 32),
        (7, "MD5: " + "0" * 32),
        (7, "sha512:xyz"),
        (8, "docker://quay.io/containerdisks/fedora:40"),
        (8, "docker://localhost:5000/a/b@sha256:" + "c" * 64),
        (8, "docker://busybox"),
        (8, "oci-archive:///data/image.tar:latest"),
        (8, "oci-archive:relative"),
    ]
    return {
        f"{sel}-{i:02d}.txt": bytes([sel]) + text.encode() for i, (sel, text) in enumerate(lines)
    }


def compression_seeds(work: Path) -> dict[str, bytes]:
    payload = b"".join(f"<block {i}>".encode() * 50 for i in range(40))
    zeros = bytes(4 * MiB)
    seeds = {
        "one.gz": gzip.compress(payload, mtime=0),
        "members.gz": gzip.compress(payload[:500], mtime=0) + gzip.compress(payload[500:], mtime=0),
        "padded.gz": gzip.compress(payload, mtime=0) + bytes(100),
        "bomb.gz": gzip.compress(zeros, 9, mtime=0),
        "one.xz": lzma.compress(payload),
        "crc32.xz": lzma.compress(payload, check=lzma.CHECK_CRC32),
        "bomb.xz": lzma.compress(zeros),
        "one.zst": zstandard.ZstdCompressor(write_checksum=True).compress(payload),
        "frames.zst": zstandard.ZstdCompressor().compress(payload[:700])
        + zstandard.ZstdCompressor(write_content_size=False).compress(payload[700:]),
        "skippable.zst": (0x184D2A50).to_bytes(4, "little")
        + (3).to_bytes(4, "little")
        + b"abc"
        + zstandard.ZstdCompressor().compress(payload),
        "bomb.zst": zstandard.ZstdCompressor(level=19).compress(zeros),
        "one.bz2": bz2.compress(payload),
        "two.bz2": bz2.compress(payload[:300]) + bz2.compress(payload[300:]),
        "truncated.gz": gzip.compress(payload, mtime=0)[:-9],
    }
    src = work / "payload"
    src.write_bytes(payload * 30)

    def tool(name: str, *cmd: str) -> None:
        seeds[name] = subprocess.run([*cmd, "-c", str(src)], check=True, capture_output=True).stdout

    tool("pigz.gz", "pigz", "-b", "32", "-p", "2")
    tool("blocks.xz", "xz", "-T2", "--block-size=16KiB")
    tool("sized.xz", "xz", "-T2", "--block-size=200KiB", "-0")
    tool("long.zst", "zstd", "-q", "--long=27")
    return seeds


def write(out: Path, target: str, seeds: dict[str, bytes]) -> None:
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (directory / name).write_bytes(data)
    print(f"seeds: {target}: {len(seeds)} inputs, {sum(map(len, seeds.values()))} bytes")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m fuzz.seeds OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    makers: dict[str, Callable[[Path], dict[str, bytes]]] = {
        "formats": format_seeds,
        "archive": archive_seeds,
        "layer": lambda _: layer_seeds(),
        "manifest": lambda _: manifest_seeds(),
        "text": lambda _: text_seeds(),
        "compression": compression_seeds,
    }
    for target, make in makers.items():
        with tempfile.TemporaryDirectory(prefix="cdi-fuzz-seeds-") as work:
            write(out, target, make(Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

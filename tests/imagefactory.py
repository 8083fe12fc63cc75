"""Real disk images for tests, made with qemu-img/qemu-io, mkfs.ext4 and xorriso.

Start from `make_reference(tmp_path)`: a small raw disk with recognisable data at known
offsets and holes between them. `convert(reference, fmt, subformat, **opts)` turns it into
any format qemu-img writes; the hostile builders make the images the importer must refuse.
Everything stays a few MiB so tests are fast. Where qemu-img cannot produce a hostile
variant (differencing VHD/VHDX/VDI), a real image is made and then patched in place, with
checksums recomputed, so only the one field under test is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
REFERENCE_SIZE = 4 * MiB
# Offsets chosen to straddle cluster, grain and block boundaries of every format.
MARK_OFFSETS = (0, 64 * KiB + 512, 1 * MiB, 2 * MiB + 300 * KiB, REFERENCE_SIZE - 4 * KiB)
MARK_LENGTH = 4 * KiB


@dataclass(frozen=True)
class Reference:
    """A raw disk image and the data expected at each marked offset (zeros elsewhere)."""

    path: Path
    size: int
    marks: Mapping[int, bytes]


def mark_bytes(offset: int, length: int = MARK_LENGTH) -> bytes:
    """Data that names its own offset, so misplaced bytes show up in a diff."""
    pattern = f"<cdi-ref offset={offset}>".encode()
    return (pattern * (length // len(pattern) + 1))[:length]


def make_reference(
    directory: Path, size: int = REFERENCE_SIZE, name: str = "reference.raw"
) -> Reference:
    """The raw reference disk; give another `name` to keep several in one directory."""
    path = directory / name
    marks = {off: mark_bytes(off) for off in MARK_OFFSETS if off + MARK_LENGTH <= size}
    with path.open("wb") as f:
        f.truncate(size)  # holes everywhere else
        for offset, data in marks.items():
            f.seek(offset)
            f.write(data)
    return Reference(path, size, marks)


# qemu's PBKDF benchmark (LUKS images) reads the thread's CPU time, which the kernel
# accounts in ticks; on a loaded machine it can read zero and qemu gives up. It is a
# property of the measurement, not of the image, so such a run is simply repeated.
_PBKDF_FLAKE = "Unable to get accurate CPU usage"


def run(*args: str | os.PathLike[str]) -> str:
    for _ in range(5):
        result = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, check=False, timeout=60
        )
        if _PBKDF_FLAKE not in result.stderr:
            break
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _source_path(reference: Reference | Path) -> Path:
    return reference.path if isinstance(reference, Reference) else reference


def convert(
    reference: Reference | Path, fmt: str, subformat: str | None = None, **opts: str | bool
) -> Path:
    """`qemu-img convert -f raw -O fmt` of the reference, next to it; returns the new path.

    `compress=True` writes compressed clusters (`-c`); every other keyword becomes
    `-o key=value` (e.g. `compat="0.10"` for qcow2 v2).
    """
    source = _source_path(reference)
    options = dict(opts)
    compress = bool(options.pop("compress", False))
    if subformat is not None:
        options["subformat"] = subformat
    tag = "-".join(f"{k}={v}" for k, v in sorted(options.items())) or "default"
    name = f"{source.stem}.{fmt}.{tag}{'.c' if compress else ''}.img"
    dest = source.with_name(name.replace("/", "_"))
    args: list[str | os.PathLike[str]] = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
    if compress:
        args.append("-c")
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    run(*args, source, dest)
    return dest


def qemu_info(path: Path, fmt: str) -> dict[str, object]:
    """`qemu-img info` with an explicit format (the tests never let qemu probe either)."""
    info: dict[str, object] = json.loads(run("qemu-img", "info", "--output=json", "-f", fmt, path))
    return info


def read_at_file(path: Path) -> Callable[[int, int], bytes]:
    """A ReadAt over a local file, counting nothing and caching nothing."""

    def read_at(offset: int, length: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    return read_at


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- other content ---------------------------------------------------------------------


def ext4_image(
    directory: Path, files: Mapping[str, bytes] | None = None, size: int = 8 * MiB
) -> Path:
    """An ext4 filesystem image holding `files` (relative path -> content)."""
    tree = directory / "ext4-tree"
    tree.mkdir(exist_ok=True)
    for name, content in (files or {"hello.txt": b"hello from cdi\n"}).items():
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    path = directory / "fs.ext4"
    with path.open("wb") as f:
        f.truncate(size)
    run("mkfs.ext4", "-q", "-F", "-d", tree, path)
    return path


def iso_image(directory: Path, files: Mapping[str, bytes] | None = None) -> Path:
    """An ISO 9660 image made by xorriso."""
    tree = directory / "iso-tree"
    tree.mkdir(exist_ok=True)
    for name, content in (files or {"README.TXT": b"cdi iso\n"}).items():
        (tree / name).write_bytes(content)
    path = directory / "image.iso"
    run("xorriso", "-as", "mkisofs", "-quiet", "-V", "CDITEST", "-o", path, tree)
    return path


# --- hostile images ----------------------------------------------------------------------


def qcow2_with_backing(directory: Path) -> Path:
    base = directory / "backing-base.raw"
    with base.open("wb") as f:
        f.truncate(1 * MiB)
    path = directory / "with-backing.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", path)
    return path


def qcow2_with_data_file(directory: Path) -> Path:
    path = directory / "with-data-file.qcow2"
    data = directory / "external-data.raw"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={data}", path, "1M")
    return path


def qcow2_encrypted(directory: Path) -> Path:
    path = directory / "encrypted.qcow2"
    run(
        "qemu-img", "create", "-q", "-f", "qcow2",
        "--object", "secret,id=sec0,data=not-a-real-secret",
        "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", path, "1M",
    )  # fmt: skip
    return path


def patch(path: Path, offset: int, data: bytes) -> Path:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    return path


def qcow2_absurd_size(directory: Path, virtual_size: int = 1 << 56) -> Path:
    """A qcow2 whose header claims `virtual_size` (the L1 table is left as it was)."""
    reference = make_reference(directory, 1 * MiB, "absurd-size-source.raw")
    path = directory / "absurd-size.qcow2"
    shutil.copyfile(convert(reference, "qcow2"), path)
    return patch(path, 24, struct.pack(">Q", virtual_size))


def qcow2_oversized(directory: Path, virtual_size: int = 1 << 40) -> Path:
    """A consistent qcow2 (L1 table sized to match) claiming `virtual_size`: valid, just big."""
    reference = make_reference(directory, 1 * MiB, "oversized-source.raw")
    path = directory / "oversized.qcow2"
    shutil.copyfile(convert(reference, "qcow2"), path)
    cluster_bits = struct.unpack_from(">I", path.read_bytes(), 20)[0]
    per_l1_entry = (1 << cluster_bits) * ((1 << cluster_bits) // 8)
    patch(path, 36, struct.pack(">I", -(-virtual_size // per_l1_entry)))
    return patch(path, 24, struct.pack(">Q", virtual_size))


def truncated(image: Path, length: int) -> Path:
    path = image.with_name(f"truncated-{length}-{image.name}")
    with image.open("rb") as src, path.open("wb") as dst:
        dst.write(src.read(length))
    return path


def qcow2_truncated(directory: Path, length: int = 100 * KiB) -> Path:
    """A qcow2 cut short: by default after its refcount table, before its L1 table."""
    source = make_reference(directory, 1 * MiB, "truncated-source.raw")
    return truncated(convert(source, "qcow2"), length)


def vmdk_descriptor_with_extents(directory: Path, subformat: str = "twoGbMaxExtentSparse") -> Path:
    """A VMDK text descriptor (and its extent files): `twoGbMaxExtentSparse` or `monolithicFlat`."""
    path = directory / f"descriptor-{subformat}.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", f"subformat={subformat}", path, "1M")
    return path


def vmdk_delta(directory: Path) -> Path:
    """A sparse VMDK whose embedded descriptor names a parent (parentFileNameHint)."""
    base = directory / "parent.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", base, "1M")
    path = directory / "delta.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", base, "-F", "vmdk", path)
    return path


def vhd_checksum(block: bytes, field: int) -> bytes:
    total = sum(block) - sum(block[field : field + 4])
    return struct.pack(">I", ~total & 0xFFFFFFFF)


def _set_vhd_footer_type(footer: bytearray, disk_type: int) -> None:
    footer[60:64] = struct.pack(">I", disk_type)
    footer[64:68] = vhd_checksum(bytes(footer), 64)


def vhd_differencing(directory: Path) -> Path:
    """A dynamic VHD turned into a differencing disk: type 4 and a parent locator."""
    path = directory / "differencing.vhd"
    run("qemu-img", "create", "-q", "-f", "vpc", path, "1M")
    data = bytearray(path.read_bytes())
    for footer_at in (0, len(data) - 512):
        footer = data[footer_at : footer_at + 512]
        _set_vhd_footer_type(footer, 4)
        data[footer_at : footer_at + 512] = footer
    header_at = struct.unpack_from(">Q", data, 16)[0]
    header = data[header_at : header_at + 1024]
    header[40:56] = uuid.uuid4().bytes  # parent unique id
    header[576:600] = struct.pack(">4sIIIQ", b"W2ku", 512, 18, 0, 0x10000)
    header[36:40] = vhd_checksum(bytes(header), 36)
    data[header_at : header_at + 1024] = header
    path.write_bytes(data)
    return path


def vhd_fixed_footer(
    payload_size: int,
    disk_type: int = 2,
    creator: bytes = b"qem2",
    geometry: tuple[int, int, int] = (1, 1, 1),
) -> bytes:
    """A valid 512-byte VHD footer (for streams where only the tail matters)."""
    footer = bytearray(512)
    footer[0:8] = b"conectix"
    struct.pack_into(">IIQ", footer, 8, 2, 0x10000, 0xFFFFFFFFFFFFFFFF)
    footer[28:32] = creator
    struct.pack_into(">QQ", footer, 40, payload_size, payload_size)
    struct.pack_into(">HBB", footer, 56, *geometry)
    struct.pack_into(">I", footer, 60, disk_type)
    footer[68:84] = uuid.uuid4().bytes
    footer[64:68] = vhd_checksum(bytes(footer), 64)
    return bytes(footer)


VHDX_METADATA_REGION = "8B7CA206-4790-4B9A-B8FE-575F050F886E"
VHDX_FILE_PARAMETERS = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B"
VHDX_VIRTUAL_DISK_SIZE = "2FA54224-CD1B-4876-B211-5DBED83BF4B8"
VHDX_LOGICAL_SECTOR_SIZE = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F"


def vhdx_metadata_entry(data: bytes, item: str) -> tuple[int, int]:
    """(offset of the table entry, offset of the item) for metadata item `item` of a VHDX."""
    region_guid = uuid.UUID(VHDX_METADATA_REGION).bytes_le
    table = data[192 * KiB : 256 * KiB]
    for i in range(struct.unpack_from("<I", table, 8)[0]):
        entry = table[16 + 32 * i : 48 + 32 * i]
        if entry[:16] == region_guid:
            region = struct.unpack_from("<Q", entry, 16)[0]
            break
    else:
        raise RuntimeError("VHDX without a metadata region")
    item_guid = uuid.UUID(item).bytes_le
    for i in range(struct.unpack_from("<H", data, region + 10)[0]):
        at = region + 32 + 32 * i
        if data[at : at + 16] == item_guid:
            return at, region + struct.unpack_from("<I", data, at + 16)[0]
    raise RuntimeError(f"VHDX without metadata item {item}")


def vhdx_differencing(directory: Path) -> Path:
    """A VHDX whose file parameters set HasParent (the metadata region has no checksum)."""
    path = directory / "differencing.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", path, "1M")
    _, item = vhdx_metadata_entry(path.read_bytes(), VHDX_FILE_PARAMETERS)
    flags = struct.unpack_from("<I", path.read_bytes(), item + 4)[0]
    return patch(path, item + 4, struct.pack("<I", flags | 2))


def vdi_differencing(directory: Path) -> Path:
    """A VDI marked as a differencing image with a parent UUID."""
    path = directory / "differencing.vdi"
    run("qemu-img", "create", "-q", "-f", "vdi", path, "1M")
    patch(path, 0x4C, struct.pack("<I", 4))
    return patch(path, 0x1B8, uuid.uuid4().bytes)


def unsupported_images(directory: Path) -> dict[str, Path]:
    """One image per format we recognise and refuse, keyed by the name the error must carry."""
    made: dict[str, Path] = {}
    for fmt, name, extra in (
        ("qcow", "qcow (version 1)", ()),
        ("qed", "QED", ()),
        ("parallels", "Parallels", ()),
        (
            "luks",
            "LUKS",
            ("--object", "secret,id=s,data=not-a-real-secret", "-o", "key-secret=s,iter-time=10"),
        ),
    ):
        path = directory / f"unsupported.{fmt}"
        run("qemu-img", "create", "-q", "-f", fmt, *extra, path, "1M")
        made[name] = path
    crafted = {
        "Bochs": b"Bochs Virtual HD Image\0" + bytes(490),
        "cloop": b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660"
        + bytes(512),
    }
    for name, content in crafted.items():
        path = directory / f"unsupported-{name.split()[0].lower()}.img"
        path.write_bytes(content)
        made[name] = path
    tar = directory / "real.tar"
    run("tar", "-cf", tar, "-C", directory, made["Bochs"].name)
    made["tar archive"] = tar
    return made

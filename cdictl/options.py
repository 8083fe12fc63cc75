"""`cdictl upload`'s command line: parsed and checked once, into a frozen UploadOptions.

The flags, their defaults and the error messages are `virtctl image-upload`'s (kubevirt
v1.7.0, pkg/virtctl/imageupload), so scripts written for virtctl work with cdictl; the
additions (`--checksum`, `--no-async`, `--kubeconfig`, `--namespace`) are marked below.
Nothing here touches the file system or the network.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cdictl import checksum

DEFAULT_WAIT_SECS = 300
DEFAULT_RETRIES = 5
READ_ONLY_MANY = "ReadOnlyMany"
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod", READ_ONLY_MANY)


class UsageError(Exception):
    """The command line is wrong; the message says how (virtctl's words where it has some)."""


class Target(StrEnum):
    DV = "dv"
    PVC = "pvc"


class VolumeMode(StrEnum):
    BLOCK = "block"
    FILESYSTEM = "filesystem"

    @property
    def kubernetes(self) -> str:
        return "Block" if self is VolumeMode.BLOCK else "Filesystem"


@dataclass(frozen=True)
class UploadOptions:
    target: Target
    name: str
    image_path: Path
    archive: bool
    """`--archive-path`: a tar extracted into a Filesystem volume (content type archive)."""
    size: str | None
    storage_class: str | None
    access_mode: str | None
    volume_mode: VolumeMode | None
    uploadproxy_url: str | None
    insecure: bool
    no_create: bool
    force_bind: bool
    namespace: str | None
    """None: the kubeconfig context's namespace (or `default`)."""
    kubeconfig: str | None
    wait_secs: int
    retries: int
    checksum: checksum.ChecksumRequest | None
    force_sync: bool
    """`--no-async`: use the synchronous path even when the proxy offers the async one."""

    @property
    def creates_pvc(self) -> bool:
        return self.target is Target.PVC


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a bad flag exits 1 as in virtctl."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cdictl upload",
                description="Upload a VM image to a DataVolume/PersistentVolumeClaim.")
    p.add_argument("args", nargs="*", metavar="dv|pvc NAME")
    p.add_argument("--image-path", default="", help="Path to the local VM image.")
    p.add_argument("--archive-path", default="", help="Path to the local archive.")
    p.add_argument("--size", default="",
                   help="The size of the DataVolume to create (ex. 10Gi, 500Mi).")
    p.add_argument("--pvc-size", default="", help=argparse.SUPPRESS)  # deprecated in virtctl
    p.add_argument("--pvc-name", default="", help=argparse.SUPPRESS)  # deprecated in virtctl
    p.add_argument("--block-volume", action="store_true", help=argparse.SUPPRESS)  # deprecated
    p.add_argument("--storage-class", default="", help="The storage class for the PVC.")
    p.add_argument("--access-mode", default="", help="The access mode for the PVC.")
    p.add_argument("--volume-mode", default="",
                   help="block or filesystem (default: the storage profile's; archives: "
                        "filesystem).")
    p.add_argument("--uploadproxy-url", default="",
                   help="The URL of the cdi-upload proxy service (default: CDIConfig's).")
    p.add_argument("--insecure", action="store_true",
                   help="Allow insecure server connections when using HTTPS.")
    p.add_argument("--no-create", action="store_true",
                   help="Don't attempt to create a new DataVolume/PVC.")
    p.add_argument("--force-bind", action="store_true",
                   help="Force bind the PVC, ignoring the WaitForFirstConsumer logic.")
    p.add_argument("--wait-secs", default=str(DEFAULT_WAIT_SECS),
                   help="Seconds to wait for upload pod to start.")
    p.add_argument("--retry", default=str(DEFAULT_RETRIES),
                   help="Attempts before giving up on a transient error; with cdictl each "
                        "attempt resumes where the last one stopped.")
    # cdictl's additions.
    p.add_argument("--checksum", default="",
                   help="ALG or ALG:HEX (md5, sha1, sha256, sha512): the server checks the "
                        "upload against it; ALG alone computes it from the file first.")
    p.add_argument("--no-async", dest="force_sync", action="store_true",
                   help="Use the synchronous upload path (it returns once the image is "
                        "written; cdi-py keeps the connection alive meanwhile).")
    p.add_argument("-n", "--namespace", default=None, help="The namespace (default: the "
                   "kubeconfig context's).")
    p.add_argument("--kubeconfig", default=None, help="Path to the kubeconfig file.")
    return p


def _natural(flag: str, text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: '
                         "expected a non-negative integer")
    return value


def parse(argv: list[str]) -> UploadOptions:
    """UploadOptions from `cdictl upload`'s arguments; UsageError with virtctl's message."""
    ns = parser().parse_args(argv)
    size: str = ns.size
    if size and ns.pvc_size and size != ns.pvc_size:
        raise UsageError("--pvc-size and --size can not be specified at the same time")
    size = size or ns.pvc_size

    volume_mode_text: str = ns.volume_mode
    if ns.block_volume:
        if not volume_mode_text:
            volume_mode_text = "block"
        elif volume_mode_text != "block":
            raise UsageError(
                f"incompatible --volume-mode '{volume_mode_text}' and --block-volume")
    if volume_mode_text not in ("", "block", "filesystem"):
        raise UsageError(f"Invalid volume mode '{volume_mode_text}'. "
                         "Valid values are 'block' and 'filesystem'.")
    volume_mode = VolumeMode(volume_mode_text) if volume_mode_text else None

    if not ns.image_path and not ns.archive_path:
        raise UsageError("either image-path or archive-path must be provided")
    if ns.image_path and ns.archive_path:
        raise UsageError("cannot handle both image-path and archive-path, provide only one")
    archive = bool(ns.archive_path)
    if archive and volume_mode is VolumeMode.BLOCK:
        raise UsageError("In archive upload the volume mode should always be filesystem")

    args: list[str] = ns.args
    if ns.pvc_name:
        # virtctl's deprecated form: `--pvc-name NAME` and no arguments means a PVC.
        if args:
            raise UsageError("cannot use --pvc-name and args")
        target, name = Target.PVC, str(ns.pvc_name)
    else:
        if len(args) != 2:
            raise UsageError("expecting two args")
        kind = args[0].lower()
        if kind not in ("dv", "pvc"):
            raise UsageError(f"invalid resource type {args[0]}")
        target, name = Target(kind), args[1]

    if ns.access_mode and ns.access_mode not in ACCESS_MODES:
        raise UsageError(f"invalid access mode '{ns.access_mode}'. Valid values are "
                         + ", ".join(ACCESS_MODES) + ".")

    try:
        wanted = checksum.parse(ns.checksum) if ns.checksum else None
    except checksum.ChecksumError as exc:
        raise UsageError(str(exc)) from None

    return UploadOptions(
        target=target,
        name=name,
        image_path=Path(ns.archive_path or ns.image_path),
        archive=archive,
        size=size or None,
        storage_class=ns.storage_class or None,
        access_mode=ns.access_mode or None,
        volume_mode=volume_mode,
        uploadproxy_url=ns.uploadproxy_url or None,
        insecure=bool(ns.insecure),
        no_create=bool(ns.no_create),
        force_bind=bool(ns.force_bind),
        namespace=ns.namespace,
        kubeconfig=ns.kubeconfig,
        wait_secs=_natural("--wait-secs", ns.wait_secs),
        retries=max(1, _natural("--retry", ns.retry)),
        checksum=wanted,
        force_sync=bool(ns.force_sync),
    )

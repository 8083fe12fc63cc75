"""What one transfer is asked to produce: the few facts the pipeline's phases read.

The CLI builds it from its whole configuration (`ImporterConfig.transfer_spec()`); the
upload server builds it from its own environment. Nothing about where the bytes come
from (URLs, credentials, TLS) is in here: that is the source's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cdicontract import sizes
from importer.checksum import Checksum

DEFAULT_OVERHEAD = float(sizes.DEFAULT_OVERHEAD)
DEFAULT_STALL_TIMEOUT = 120.0


class ContentType(StrEnum):
    """CDI's `spec.contentType`."""

    KUBEVIRT = "kubevirt"
    """A disk image, converted to raw into a file or a block device."""
    ARCHIVE = "archive"
    """A tar, extracted into a directory."""


@dataclass(frozen=True)
class TransferSpec:
    dest: str
    """The image file or block device, or for an archive the directory it goes into."""
    content_type: ContentType = ContentType.KUBEVIRT
    requested_size: int | None = None
    """The volume's requested size (IMPORTER_IMAGE_SIZE); the target turns it into the
    usable size with the filesystem overhead. None: unknown, nothing is sized."""
    filesystem_overhead: float = DEFAULT_OVERHEAD
    checksum: Checksum | None = None
    """Expected digest of the bytes as the source serves (or the client sends) them."""
    preallocation: bool = False
    scratch_dir: str | None = None
    """Where a conversion without random access keeps its copy; None: next to the image
    (or, for a block device, in the process's temporary directory)."""
    scratch_volume_only: bool = False
    """In a pod: the copy goes only to `scratch_dir` (the scratch PVC), never next to the
    image or into the container's /tmp; without one the run ends with
    SCRATCH_SPACE_REQUIRED and the controller restarts it with a scratch volume."""
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    """Seconds qemu-img may go without progress before it is stopped."""

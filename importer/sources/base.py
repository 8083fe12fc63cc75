"""The interface every source implements (HTTP, S3, registry, upload body, local file).

A source is opened at an offset and yields chunks; `importer.resume.ResumingReader`
turns drops into Range re-opens. A source that can serve random reads also offers a
`Window` on a `PinnedObject` (importer/sources/pinned.py): the one verified view through
which inspection, qemu-img (via the range proxy and nbdkit) and the checksum all read the
same bytes, so it converts without a scratch copy and without trusting the server twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from importer.checksum import Checksum
    from importer.sources.pinned import Window


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows before the transfer starts."""

    size: int | None
    """Length in bytes of the object as served (before decompression), if known."""
    supports_ranges: bool
    """Whether `open(offset>0)` and `random_reads()` work."""
    validator: str | None = None
    """An ETag or similar that pins the representation across ranged re-opens."""
    description: str = ""
    """Where the bytes come from, for messages (never containing credentials)."""
    checksum: Checksum | None = None
    """A digest the store itself keeps for the object (GCS's md5Hash), verified like a
    user's checksum when the user gave none."""


@dataclass(frozen=True)
class SourceCapabilities:
    """What a source can do, as data the pipeline's route is decided from."""

    restartable: bool
    """The body can be read again from byte 0 after a failure (a URL can; an upload body,
    read once as the client sends it, cannot)."""
    random_access: bool
    """`random_reads()` gives a pinned view: qemu-img converts without a scratch copy."""
    scratch_reason: str | None = None
    """Why a non-raw image from this source needs a scratch copy (when not random_access)."""

    def __post_init__(self) -> None:
        if self.random_access and self.scratch_reason is not None:
            raise ValueError("a source with random access needs no scratch reason")


@dataclass(frozen=True)
class RandomAccess:
    """An nbdkit command line (plugin and its parameters, filters) serving the bytes read-only.

    `secret_files` are files the caller must keep until nbdkit exits (passwords given to
    nbdkit as `password=+FILE`), so no secret appears in a process listing.
    """

    plugin: str
    params: tuple[str, ...]
    filters: tuple[str, ...] = ()
    filter_params: tuple[str, ...] = ()
    secret_files: tuple[str, ...] = field(default=())


class Stream(Protocol):
    """An open body: chunks in order, then StopIteration; `close` releases the connection."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Source(Protocol):
    def info(self) -> SourceInfo:
        """Probe the source (HEAD or equivalent); raises ImportFailure with a precise reason."""
        ...

    def open(self, offset: int = 0) -> Stream:
        """Open the body at `offset` (0: the whole body). Raises ImportFailure.

        Must raise `TransientSourceError` for failures worth retrying (dropped connection,
        5xx, timeouts) and a permanent-reason `ImportFailure` otherwise.
        """
        ...

    def capabilities(self) -> SourceCapabilities:
        """What this source can do; valid once `info()` has answered."""
        ...

    def random_reads(self) -> Window | None:
        """The image as a pinned, verified random-access view, or None when impossible
        (exactly when `capabilities().random_access` is false).

        The same object is returned on every call: every reader must share it.
        """
        ...

    def close(self) -> None: ...

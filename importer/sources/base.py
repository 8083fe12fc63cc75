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

    def random_reads(self) -> Window | None:
        """The image as a pinned, verified random-access view, or None when impossible.

        The same object is returned on every call: every reader must share it.
        """
        ...

    def close(self) -> None: ...

"""Tar streams opened with bounds on what one header may cost and how many members pass.

Python's tarfile believes the sizes a header declares. It reads a pax extended header or a
GNU long name/link of any declared size wholly into memory, follows GNU sparse extension
blocks and chains of extended headers (by recursion) without end, parses pax records with
regular expressions that go quadratic on crafted input (CVE-2024-6232, fixed only in
3.11.10), and keeps every member it has seen in `TarFile.members`. So a gzip of a few KiB
can cost gigabytes of memory or hours of CPU before one member reaches our own checks.

`open_stream` and `open_seekable` return a `BoundedTarFile`: it counts members and drops
each one as it passes (memory stays flat however many there are), and its `BoundedTarInfo`
reads extended headers itself, checking the declared size before reading a byte of one.
Past a bound: `ImportFailure(ARCHIVE_REFUSED)` with a message naming the bound.

The bounds (see `TarBounds`), and why these numbers:
- 1 MiB for one extended header (pax, GNU long name/link) and for a GNU sparse map: what
  Go's archive/tar allows since CVE-2022-2879 and libarchive allows for a pax record. A
  header carries a path (PATH_MAX is 4 KiB on Linux) and perhaps xattrs (one value is at
  most 64 KiB on Linux); nothing a real tool writes comes near.
- 8 extended headers before one member: a real member has at most a global and a local pax
  header, or a GNU long name and a long link. It also keeps tarfile's recursion shallow.
- 64 pax global records, 1 MiB of global headers in all: tarfile patches *every later
  member* with all global records, so their number multiplies the cost of each member.
  Real archives carry one (git archive's `comment`) or none.
- members: 1,000,000 for archive content (`ARCHIVE_CONTENT`) and 100,000 for a registry
  layer (`REGISTRY_LAYER`); see there.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

if TYPE_CHECKING:
    from tarfile import _Fileobj  # what TarFile.open accepts: read, tell, seek...

MiB = 1 << 20


@dataclass(frozen=True)
class TarBounds:
    what: str
    """What the tar is, for messages ("archive", "registry layer")."""
    max_members: int
    max_header_bytes: int = MiB
    """One pax or GNU long name/link header; also a GNU sparse map; also all global headers."""
    max_header_chain: int = 8
    """Extended headers in a row before the member they describe."""
    max_global_records: int = 64
    """Distinct pax global records, which tarfile applies to every later member."""


ARCHIVE_CONTENT = TarBounds("archive", max_members=1_000_000)
"""A million files fill every inode of a 16 GiB ext4 volume (one inode per 16 KiB by
default), so a bigger archive would fail on most volumes anyway. Memory does not grow with
the count; what the cap bounds is time: tarfile parses each header in Python, and a
header-only bomb of a million members (a 2 MiB gzip) costs about a minute of CPU."""

REGISTRY_LAYER = TarBounds("registry layer", max_members=100_000)
"""We read layers from the top down only to find the one file under /disk/: a containerdisk
layer has a handful of entries and the biggest common base layers (Fedora, UBI) tens of
thousands. The walk keeps per-member state for /disk/ entries and whiteouts, so the cap
also bounds that, and the CPU of a header bomb to seconds."""

_LONG_NAMES = {tarfile.GNUTYPE_LONGNAME: "GNU long name", tarfile.GNUTYPE_LONGLINK: "GNU long link"}
_PAX = {
    tarfile.XHDTYPE: "pax extended",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended",
}
_MAX_LENGTH_DIGITS = 20  # a pax record length beyond this cannot fit any header we accept


# tarfile's header errors (not in typeshed): a checksum that does not add up, a short block.
_CORRUPT_HEADER: tuple[type[Exception], ...] = (
    getattr(tarfile, "InvalidHeaderError"),  # noqa: B009
    getattr(tarfile, "TruncatedHeaderError"),  # noqa: B009
)


def refused(bounds: TarBounds, why: str) -> ImportFailure:
    return ImportFailure(Reason.ARCHIVE_REFUSED, f"{bounds.what} refused: {why}")


class BoundedTarInfo(tarfile.TarInfo):
    """Parses extended headers itself, refusing oversized ones before reading them.

    A header that is corrupt (bad checksum) or cut short after the first member is an
    error here: tarfile would take it for the end of the archive and report a partial
    extraction as a complete one. (A stream that simply ends at a member boundary without
    the two zero blocks is still accepted, as GNU tar accepts it.)

    `_proc_member` is tarfile's documented hook for subclasses ("can be overridden in a
    subclass to add custom _proc_*() methods"); ordinary members still go through it.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> BoundedTarInfo:
        try:
            member = super().fromtarfile(tarfile_)
        except _CORRUPT_HEADER as exc:
            if tarfile_.offset > 0:
                raise tarfile.ReadError(
                    f"corrupt tar header at byte {tarfile_.offset}: {exc}"
                ) from None
            raise
        return member

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        assert isinstance(archive, BoundedTarFile)
        if self.size < 0:  # tarfile would read(-n): to the end of the stream
            raise tarfile.ReadError("tar header with a negative size")
        if self.type in _LONG_NAMES or self.type in _PAX:
            archive.chain += 1
            if archive.chain > archive.bounds.max_header_chain:
                raise refused(
                    archive.bounds,
                    f"more than {archive.bounds.max_header_chain} extended headers in a row "
                    "(the bound on a header chain)",
                )
        if self.type in _LONG_NAMES:
            self._check_size(archive, _LONG_NAMES[self.type])
            return self._stdlib(archive)
        if self.type in _PAX:
            return self._proc_pax_bounded(archive)
        if self.type == tarfile.GNUTYPE_SPARSE:
            with _read_budget(archive, "GNU sparse map"):
                return self._stdlib(archive)
        return self._stdlib(archive)

    def _stdlib(self, archive: BoundedTarFile) -> tarfile.TarInfo:
        """tarfile's own processing, for what it reads within bounds already."""
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return member

    def _check_size(self, archive: BoundedTarFile, label: str) -> None:
        limit = archive.bounds.max_header_bytes
        if self.size > limit:
            raise refused(
                archive.bounds,
                f"a {label} header of {self.size} bytes exceeds the bound of {limit} bytes "
                "per extended header",
            )

    def _proc_pax_bounded(self, archive: BoundedTarFile) -> tarfile.TarInfo:
        """tarfile's `_proc_pax` with bounds and a linear record parser."""
        bounds = archive.bounds
        self._check_size(archive, _PAX[self.type])
        is_global = self.type == tarfile.XGLTYPE
        if is_global:
            archive.global_bytes += self.size
            if archive.global_bytes > bounds.max_header_bytes:
                raise refused(
                    bounds,
                    f"pax global headers exceed the bound of {bounds.max_header_bytes} bytes "
                    "in all",
                )
        data = archive.fileobj.read(self._block(self.size))  # type: ignore[attr-defined]
        records = list(pax_records(data[: self.size]))

        # A global header updates the archive's defaults in place; an extended one a copy.
        headers = cast("dict[str, str]", archive.pax_headers)
        if not is_global:
            headers = dict(headers)
        charset = next((v for k, v in records if k == b"hdrcharset"), None)
        binary = charset == b"BINARY" or (charset is None and headers.get("hdrcharset") == "BINARY")
        name_encoding = archive.encoding if binary else "utf-8"
        for raw_key, raw_value in records:
            key = _decode(raw_key, "utf-8", "utf-8", archive.errors)
            if key in tarfile.PAX_NAME_FIELDS:
                headers[key] = _decode(raw_value, name_encoding, archive.encoding, archive.errors)
            else:
                headers[key] = _decode(raw_value, "utf-8", "utf-8", archive.errors)
        if is_global and len(headers) > bounds.max_global_records:
            raise refused(
                bounds,
                f"more than {bounds.max_global_records} pax global records "
                "(the bound on records every later member inherits)",
            )

        try:
            member = self.fromtarfile(archive)
        except tarfile.HeaderError as exc:
            raise tarfile.ReadError(str(exc)) from None

        # GNU's three ways of describing a sparse file in pax headers.
        if "GNU.sparse.map" in headers:  # 0.1
            numbers = _ints(headers["GNU.sparse.map"].split(","))
            _set_sparse(member, list(zip(numbers[::2], numbers[1::2], strict=False)))
        elif "GNU.sparse.size" in headers:  # 0.0: repeated records, in order
            offsets = _ints([_ascii(v) for k, v in records if k == b"GNU.sparse.offset"])
            sizes = _ints([_ascii(v) for k, v in records if k == b"GNU.sparse.numbytes"])
            _set_sparse(member, list(zip(offsets, sizes, strict=False)))
        elif headers.get("GNU.sparse.major") == "1" and headers.get("GNU.sparse.minor") == "0":
            with _read_budget(archive, "GNU sparse map"):  # 1.0: the map precedes the data
                self._proc_gnusparse_10(member, headers, archive)  # type: ignore[attr-defined]

        if not is_global:
            member._apply_pax_info(headers, archive.encoding, archive.errors)  # type: ignore[attr-defined]
            member.offset = self.offset
            if "size" in headers:
                # The header replaced the member's size: where the next header is moved.
                offset = member.offset_data
                if member.isreg() or member.type not in tarfile.SUPPORTED_TYPES:
                    offset += member._block(member.size)  # type: ignore[attr-defined]
                archive.offset = offset
        return member


class BoundedTarFile(tarfile.TarFile):
    """A TarFile that counts its members and forgets each one once the next is read."""

    tarinfo = BoundedTarInfo
    members: list[tarfile.TarInfo]
    firstmember: tarfile.TarInfo | None

    def __init__(self, *args: Any, bounds: TarBounds, **kwargs: Any) -> None:
        # Set before TarFile.__init__, which reads the first member.
        self.bounds = bounds
        self.count = 0
        self.chain = 0
        """Extended headers read so far for the member being read."""
        self.global_bytes = 0
        super().__init__(*args, **kwargs)

    def next(self) -> tarfile.TarInfo | None:
        if self.firstmember is not None:
            return super().next()  # the member __init__ read (and counted) already
        self.chain = 0
        member = super().next()
        # TarFile keeps every member for getmember(); we never look one up by name.
        self.members.clear()
        if member is not None:
            self.count += 1
            if self.count > self.bounds.max_members:
                raise refused(
                    self.bounds,
                    f"more than {self.bounds.max_members} members "
                    f"(the bound on members of one {self.bounds.what})",
                )
        return member


def pax_records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (keyword, value) of each `LENGTH KEYWORD=VALUE\\n` record, in one linear pass.

    Stops at the NUL padding after the last record; raises ReadError on a malformed record
    (tarfile would take it for the end of the archive and stop silently).
    """
    pos, end = 0, len(data)
    while pos < end and data[pos] != 0:
        space = data.find(b" ", pos, min(end, pos + _MAX_LENGTH_DIGITS + 1))
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise tarfile.ReadError("malformed pax record length")
        stop = pos + int(digits)
        if stop - pos < 5 or stop > end or data[stop - 1] != 0x0A:  # shortest: b"5 k=\n"
            raise tarfile.ReadError("malformed pax record")
        keyword, equals, value = data[space + 1 : stop - 1].partition(b"=")
        if not keyword or not equals:
            raise tarfile.ReadError("malformed pax record")
        yield keyword, value
        pos = stop


def _decode(raw: bytes, encoding: str, fallback: str, errors: str) -> str:
    try:
        return raw.decode(encoding, "strict")
    except UnicodeDecodeError:
        return raw.decode(fallback, errors)


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", "replace")


def _ints(texts: list[str]) -> list[int]:
    try:
        return [int(t) for t in texts]
    except ValueError:  # includes Python's 4300-digit cap on int()
        raise tarfile.ReadError("malformed GNU sparse map") from None


def _set_sparse(member: tarfile.TarInfo, pairs: list[tuple[int, int]]) -> None:
    member.sparse = pairs  # type: ignore[assignment]  # typeshed says bytes; tarfile uses pairs


class _Budget:
    """The archive's file object while tarfile reads a sparse map: refuses past a budget."""

    def __init__(self, inner: IO[bytes], archive: BoundedTarFile, label: str) -> None:
        self._inner = inner
        self._archive = archive
        self._label = label
        self._left = archive.bounds.max_header_bytes

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or size > self._left:
            limit = self._archive.bounds.max_header_bytes
            raise refused(
                self._archive.bounds,
                f"a {self._label} longer than the bound of {limit} bytes per extended header",
            )
        self._left -= size
        return self._inner.read(size)

    def tell(self) -> int:
        return self._inner.tell()

    def seek(self, pos: int, /) -> int:
        return self._inner.seek(pos)

    def write(self, b: bytes, /) -> int:
        raise OSError("read-only")

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _read_budget(archive: BoundedTarFile, label: str) -> Iterator[None]:
    """Let tarfile's own sparse-map readers run, but only through `max_header_bytes`."""
    inner = cast("IO[bytes]", archive.fileobj)
    archive.fileobj = _Budget(inner, archive, label)
    try:
        yield
    except (ValueError, IndexError) as exc:  # tarfile's readers on a malformed map
        raise tarfile.ReadError("malformed GNU sparse map") from exc
    finally:
        archive.fileobj = inner


def _bounds_kwarg(bounds: TarBounds) -> dict[str, Any]:
    # `bounds` travels through TarFile.open's **kwargs to our __init__; typeshed lists only
    # TarFile's own keywords, hence the Any.
    return {"bounds": bounds}


def open_stream(fileobj: _Fileobj, bounds: TarBounds) -> BoundedTarFile:
    """A tar read front to back (`r|`): the archive extractor, a streamed registry layer."""
    return BoundedTarFile.open(fileobj=fileobj, mode="r|", **_bounds_kwarg(bounds))


def open_seekable(fileobj: _Fileobj, bounds: TarBounds) -> BoundedTarFile:
    """A tar whose data tarfile seeks over (`r:`): walking a layer's headers by ranged reads."""
    return BoundedTarFile.open(fileobj=fileobj, mode="r:", **_bounds_kwarg(bounds))

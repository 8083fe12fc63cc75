"""The transfer pipeline: the phases of one import or upload and the decisions between them.

`run_transfer(source, target, spec, progress, cancel, events)` is the one entry point; the
CLI, the upload server and (later) the cloner call it with their own source.

    source -> count + hash (bytes as served) -> decompress -> detect format
      raw/ISO:             stream into the target, zero blocks as holes        (TransferRaw)
      other, seekable:     qemu-img reads the source's pinned view, no copy    (ConvertFromSource)
      other, not seekable: download to scratch, then convert                   (DownloadToScratch,
                                                                                ConvertFromScratch)
      archive:             extract the tar into the target directory           (ExtractArchive)

The route between them is `importer.route.route`, a pure function of the format, the
compression and the source's `SourceCapabilities`. Each phase handler returns the next
phase; `importer.driver.drive` walks them. Every failure aborts the target, so no
half-written image is left at the destination. A source that cannot be read twice (an
upload body) is never restarted from zero: what would restart it fails the run instead.

The bytes we inspect and checksum are the bytes we write: the streaming paths hash and
detect the one stream they write from (and scratch is a local copy of it); the ranged path
reads everything (format detection, header inspection, `qemu-img info`, `qemu-img convert`,
the checksum, a registry blob's digest) through the source's one `PinnedObject`
(importer/sources/pinned.py), and verifies the whole object before the target is committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from cdicontract import scratch
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer import formats, leftovers, qemu
from importer.checksum import Hasher
from importer.compression import Compression, decompress, detect_compression
from importer.driver import Phase, drive
from importer.errors import ImportFailure, RestartRequired
from importer.events import TransferEvents
from importer.headcheck import check_head
from importer.nbd import NbdServer, nbd_source
from importer.progress import Progress
from importer.rawcopy import copy_raw
from importer.resume import ResumingReader
from importer.route import Way, route
from importer.sources.base import Source, SourceCapabilities, SourceInfo
from importer.sources.pinned import Window
from importer.sources.rangeproxy import RangeProxy
from importer.streams import Counter, Tail, peek, tap
from importer.targets import Target, select_target
from importer.transferspec import ContentType, TransferSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RESTARTS = 3
COMPRESSION_MAGIC_BYTES = 512
# Scratch holds the non-raw container (e.g. qcow2), which may be a little larger than
# the disk it describes (metadata); beyond this it cannot be a valid image for the volume.
SCRATCH_SLACK = 1.1
SCRATCH_EXTRA = 64 << 20


@dataclass
class ImportState:
    """What the phases learn, in order. Mutable on purpose: the driver owns it for one run."""

    info: SourceInfo | None = None
    caps: SourceCapabilities | None = None
    usable: int | None = None
    compression: Compression | None = None
    fmt: formats.DiskFormat | None = None
    virtual_size: int | None = None
    image_size: int | None = None
    stream: Iterator[bytes] | None = None
    reader: ResumingReader | None = None
    reading: Generator[bytes, None, None] | None = None
    """The reader's generator, closed explicitly so the source's stream is released (and
    an upload body learns at once that nobody reads it any more)."""
    hasher: Hasher | None = None
    served: Counter = field(default_factory=Counter)
    scratch_path: str | None = None
    scratch_reason: str | None = None
    target_begun: bool = False
    restarts: int = 0
    resumes_before: int = 0
    ranged_fetched: int = 0
    """Bytes the pinned view fetched for the ranged path (re-reads included)."""
    ranged_resumes: int = 0
    preallocated: bool = False


_FIRST_PHASE = {
    Way.STREAM_RAW: Phase.TRANSFER_RAW,
    Way.CONVERT_RANDOM_ACCESS: Phase.CONVERT_NBD,
    Way.CONVERT_FROM_SCRATCH: Phase.DOWNLOAD_SCRATCH,
    Way.EXTRACT_ARCHIVE: Phase.EXTRACT_ARCHIVE,
}


def run_transfer(
    source: Source | None,
    target: Target | None,
    spec: TransferSpec,
    progress: Progress,
    cancel: threading.Event,
    *,
    events: TransferEvents | None = None,
) -> TerminationReport:
    """Run one transfer in the calling thread; returns the report or raises ImportFailure.

    `source` None makes a blank image. `target` None picks the file or block device at
    `spec.dest` (an archive is always extracted into the directory `spec.dest`). The
    caller owns the source and closes it. `events` (optional) is told when the source is
    drained and when the run fails; on failure nothing is left at the destination.
    """
    events = events or TransferEvents()
    with tempfile.TemporaryDirectory(prefix="cdi-transfer-") as workdir:
        try:
            pipeline = ImportPipeline(
                spec, progress, workdir, source, target=target, cancel=cancel, events=events
            )
        except ImportFailure as e:  # a spec that names no usable target
            events.mark_failed(e)
            raise
        return pipeline.run()


class ImportPipeline:
    def __init__(
        self,
        spec: TransferSpec,
        progress: Progress,
        workdir: str,
        source: Source | None,
        *,
        target: Target | None = None,
        cancel: threading.Event | None = None,
        events: TransferEvents | None = None,
    ) -> None:
        self.spec = spec
        self.progress = progress
        self.workdir = workdir
        self.source = source
        self.cancel = cancel or threading.Event()
        self.events = events or TransferEvents()
        self.state = ImportState()
        self.target: Target | None = None
        if spec.content_type is ContentType.KUBEVIRT:
            self.target = target or select_target(spec.dest)
        elif target is not None:
            raise ImportFailure(
                Reason.INVALID_CONFIG, "an archive is extracted into a directory, not a target"
            )
        elif source is None:
            raise ImportFailure(Reason.INVALID_CONFIG, "a blank image cannot be an archive")
        self._started = time.monotonic()
        # Which slice of the whole the download is, when downloading is what progress measures.
        self._download_share: tuple[float, float] | None = (0.0, 100.0)

    # ---- driver -------------------------------------------------------------------------

    def run(self) -> TerminationReport:
        try:
            # A killed run's temporary files would eat the space this one needs.
            leftovers.sweep_before_run(self.spec.dest, self.target, self._scratch_dir())
            handlers = {
                Phase.INFO: self._info,
                Phase.BLANK: self._blank,
                Phase.TRANSFER_RAW: self._transfer_raw,
                Phase.CONVERT_NBD: self._convert_from_source,
                Phase.DOWNLOAD_SCRATCH: self._download_scratch,
                Phase.CONVERT_SCRATCH: self._convert_scratch,
                Phase.EXTRACT_ARCHIVE: self._extract_archive,
            }
            try:
                walked = drive(
                    handlers,
                    allowed_visits=lambda p: 1 + self.state.restarts,
                    on_phase=lambda p: log.info("phase %s", p),
                )
            except BaseException:
                self._abort()
                raise
            finally:
                self._close_stream()
                self._remove_scratch()
        except ImportFailure as e:
            self.events.mark_failed(e)
            raise
        except BaseException as e:
            self.events.mark_failed(
                ImportFailure(Reason.INTERNAL, f"transfer stopped: {type(e).__name__}")
            )
            raise
        self.events.mark_drained()
        self.progress.set(100.0)
        return self._report(walked)

    def _abort(self) -> None:
        if self.target is not None and self.state.target_begun:
            try:
                self.target.abort()
            finally:
                self.state.target_begun = False

    def _begin_target(self) -> Target:
        assert self.target is not None
        if not self.state.target_begun:
            self.target.begin()
            self.state.target_begun = True
        return self.target

    def _commit(self, image_size: int) -> Phase:
        """Finish the target: grown to the usable size, synced, in place."""
        assert self.target is not None
        self.state.image_size = image_size
        self.target.commit(image_size, self.state.usable, preallocate=self.spec.preallocation)
        self.state.preallocated = self.spec.preallocation
        self.state.target_begun = False
        return Phase.COMPLETE

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise ImportFailure(Reason.CANCELLED, "import cancelled (terminated)")

    # ---- phases -------------------------------------------------------------------------

    def _info(self) -> Phase:
        spec, st = self.spec, self.state
        if self.target is not None:
            st.usable = self.target.capacity(spec.requested_size, spec.filesystem_overhead)
        elif spec.requested_size is not None:
            st.usable = spec.requested_size
        if self.source is None:
            return Phase.BLANK
        st.info = self.source.info()
        if spec.checksum is None and st.info.checksum is not None:
            # The store's own digest of the object (GCS md5Hash) covers the same bytes.
            self.spec = spec = replace(spec, checksum=st.info.checksum)
        st.caps = self.source.capabilities()
        self._open_stream()
        if spec.content_type is ContentType.ARCHIVE:
            return _FIRST_PHASE[route(None, st.compression, st.caps, spec.content_type).way]
        assert st.stream is not None
        head, st.stream = peek(st.stream, formats.HEAD_SIZE)
        st.fmt = formats.detect(head)
        # Refuse what the head already condemns, before the rest of the body is read: an
        # upload client is still sending and should hear why at once.
        declared = st.info.size if st.compression is None else None
        check_head(st.fmt, head, usable=st.usable, declared_size=declared)
        chosen = route(st.fmt, st.compression, st.caps, spec.content_type)
        st.scratch_reason = chosen.scratch_reason
        if chosen.way is Way.CONVERT_RANDOM_ACCESS:
            self._close_stream()
        return _FIRST_PHASE[chosen.way]

    def _open_stream(self) -> None:
        """(Re)open the source from byte 0 with the counting/hashing/decompressing stages."""
        st, spec = self.state, self.spec
        assert self.source is not None and st.info is not None and st.caps is not None
        self._close_stream()
        st.served = Counter(self._on_served)
        st.hasher = spec.checksum.hasher() if spec.checksum else None
        st.reader = ResumingReader(
            self.source,
            st.info,
            # A source read once cannot be re-opened, not even at byte 0.
            max_attempts=8 if st.caps.restartable else 1,
            on_resume=lambda _n, _e: self._on_resume(),
        )
        st.reading = iter(st.reader)
        observers: list[Callable[[bytes], object]] = [st.served.observe]
        if st.hasher is not None:
            observers.append(st.hasher.update)
        served = tap(st.reading, *observers)
        magic, served = peek(served, COMPRESSION_MAGIC_BYTES)
        st.compression = detect_compression(magic)
        # The decompressor's cap is the loosest any path needs (a qcow2 container may exceed
        # its disk a little); each path then enforces its own exact limit.
        limit = None
        if st.usable is not None:
            exact = spec.content_type is ContentType.ARCHIVE
            limit = st.usable if exact else int(st.usable * SCRATCH_SLACK) + SCRATCH_EXTRA
        st.stream = decompress(served, st.compression, limit=limit)

    def _on_served(self, n: int) -> None:
        self._check_cancel()
        total = self.state.info.size if self.state.info else None
        self.progress.add_source_bytes(n, total)
        if total and self._download_share is not None:
            lo, hi = self._download_share
            self.progress.set(lo + (hi - lo) * min(1.0, self.state.served.count / total))

    def _on_resume(self) -> None:
        reader = self.state.reader
        if reader is not None:
            self.progress.resumed(self.state.resumes_before + reader.resumes)

    def _close_stream(self) -> None:
        st = self.state
        if st.reader is not None:
            st.resumes_before += st.reader.resumes
        reading, st.reading = st.reading, None
        st.stream = None
        st.reader = None
        if reading is not None:
            # Closing runs the reader's `finally`, which closes the source's stream.
            with contextlib.suppress(ValueError):  # still running on another thread
                reading.close()

    def _restart(self, why: RestartRequired) -> Phase:
        st = self.state
        if st.caps is not None and not st.caps.restartable:
            raise ImportFailure(
                why.reason,
                f"{why.message}; the source is read once and cannot start over, "
                "so the transfer fails instead of restarting from zero",
            ) from why
        st.restarts += 1
        if st.restarts > MAX_RESTARTS:
            raise ImportFailure(
                why.reason, f"{why.message} (gave up after {MAX_RESTARTS} restarts from zero)"
            ) from why
        self._abort()
        self._close_stream()
        return Phase.INFO

    def _blank(self) -> Phase:
        assert self.target is not None
        usable = self.state.usable
        if usable is None:
            raise ImportFailure(Reason.INVALID_CONFIG, "a blank image needs --size")
        self.target.blank(usable, self.spec.preallocation)
        self.state.preallocated = self.spec.preallocation
        self.state.fmt = formats.DiskFormat.RAW
        self.state.virtual_size = self.state.image_size = usable
        return Phase.COMPLETE

    def _transfer_raw(self) -> Phase:
        st = self.state
        assert st.stream is not None
        target = self._begin_target()
        tail = Tail(512)
        try:
            # 512 bytes of slack: a fixed VHD's footer is not part of the disk.
            limit = None if st.usable is None else st.usable + 512
            written = copy_raw(tap(st.stream, tail.observe), target, limit=limit)
            if st.hasher is not None:
                st.hasher.verify()
        except RestartRequired as e:
            return self._restart(e)
        image_size = written
        payload = formats.vhd_fixed_payload(tail.data, written) if written >= 1024 else None
        if payload is not None:
            # A fixed VHD is raw data plus a 512-byte footer: drop the footer.
            st.fmt = formats.DiskFormat.VHD
            image_size = payload
            target.write_at(payload, bytes(written - payload))
            if not target.is_block:
                os.truncate(target.qemu_output(), payload)
        if st.usable is not None and image_size > st.usable:
            formats.ensure_fits(image_size, st.usable)
        st.virtual_size = image_size
        phase = self._commit(image_size)
        self.events.mark_drained()
        return phase

    def _inspect_and_check(self, uri: str, read_at: formats.ReadAt, size: int | None) -> int:
        st = self.state
        assert st.fmt is not None
        image = formats.inspect(st.fmt, read_at, size)
        if image.virtual_size is None:
            raise ImportFailure(Reason.INVALID_IMAGE, f"{st.fmt.value} header has no virtual size")
        formats.ensure_fits(image.virtual_size, st.usable or image.virtual_size)
        qi = qemu.info(uri, st.fmt.value)
        qemu.check_safe(qi)
        if qi.virtual_size != image.virtual_size:
            raise ImportFailure(
                Reason.INVALID_IMAGE,
                f"virtual size disagrees: header says {image.virtual_size}, "
                f"qemu-img says {qi.virtual_size}",
            )
        st.virtual_size = image.virtual_size
        return image.virtual_size

    def _convert_from_source(self) -> Phase:
        st = self.state
        assert self.source is not None and st.fmt is not None
        view = self.source.random_reads()
        assert view is not None
        self._download_share = None
        if self.spec.checksum is not None:
            view.add_verifier(self.spec.checksum.hasher())
        # The format was detected from the plain stream; the view must say the same.
        head = view.read_at(0, formats.HEAD_SIZE)
        if detect_compression(head[:COMPRESSION_MAGIC_BYTES]) is not None or (
            formats.detect(head) is not st.fmt
        ):
            raise ImportFailure(
                Reason.SOURCE_CHANGED,
                f"{view.object.description}: ranged reads disagree with the download about "
                "what the image is",
            )
        proxy = RangeProxy(view.fetch, view.length, view.name)
        try:
            access = proxy.random_access()
            with NbdServer(access, workdir=self.workdir) as nbd:
                virtual = _pinned_failure(
                    view, lambda: self._inspect_and_check(nbd.uri, view.read_at, view.length)
                )
                target = self._begin_target()

                def convert() -> None:
                    # A factory, not a URI: the first attempt reuses this server, a retry
                    # after a stall gets a fresh nbdkit (reading the same pinned bytes).
                    qemu.convert(
                        nbd_source(access, workdir=self.workdir, running=nbd),
                        st.fmt.value if st.fmt else "",
                        target.qemu_output(),
                        dest_is_block=target.is_block,
                        on_progress=self.progress.stage(0.0, 99.0),
                        stall_timeout=self.spec.stall_timeout,
                        cancel=self.cancel,
                        verified=nbd.uri,
                    )

                _pinned_failure(view, convert)
            # Nothing is committed before the whole object is verified: the checksum, the
            # registry digest, and every byte read twice read the same.
            _pinned_failure(view, view.finish)
        finally:
            proxy.close()
            objects = (view.object, *view.companions)
            st.ranged_fetched = sum(o.stats.fetched for o in objects)
            st.ranged_resumes = sum(o.stats.resumes for o in objects)
        return self._commit(virtual)

    def _scratch_dir(self) -> str:
        if self.spec.scratch_dir:
            return self.spec.scratch_dir
        if self.target is not None and not self.target.is_block:
            return os.path.dirname(os.path.abspath(self.spec.dest))
        return self.workdir

    def _download_scratch(self) -> Phase:
        st = self.state
        assert st.stream is not None
        if self.spec.scratch_volume_only and not self.spec.scratch_dir:
            # Before a byte is copied: the pod's own disk is the node's, and the target
            # must not hold both the copy and the image (CDI: ErrRequiresScratchSpace).
            raise ImportFailure(
                Reason.SCRATCH_SPACE_REQUIRED, f"{scratch.MESSAGE} ({st.scratch_reason})"
            )
        fd, path = tempfile.mkstemp(prefix=".cdi-scratch-", suffix=".img", dir=self._scratch_dir())
        st.scratch_path = path
        limit = None
        if st.usable is not None:
            limit = int(st.usable * SCRATCH_SLACK) + SCRATCH_EXTRA
        self._download_share = (0.0, 60.0)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                written = 0
                for chunk in st.stream:
                    written += len(chunk)
                    if limit is not None and written > limit:
                        raise ImportFailure(
                            Reason.IMAGE_TOO_LARGE,
                            "DataVolume too small to contain image: the "
                            f"{st.fmt} image is larger than {limit} bytes",
                        )
                    f.write(chunk)
                os.fsync(f.fileno())
            if st.hasher is not None:
                st.hasher.verify()
        except RestartRequired as e:
            self._remove_scratch()
            return self._restart(e)
        except OSError as e:
            raise _os_failure(e, "writing the scratch copy") from e
        # Every byte of the body is now verified and on stable storage: an async upload
        # can be answered while the conversion goes on.
        self.events.mark_drained()
        return Phase.CONVERT_SCRATCH

    def _convert_scratch(self) -> Phase:
        st = self.state
        assert st.scratch_path is not None and st.fmt is not None
        path = st.scratch_path
        size = os.path.getsize(path)

        def read_at(offset: int, length: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)

        virtual = self._inspect_and_check(path, read_at, size)
        target = self._begin_target()
        qemu.convert(
            path,
            st.fmt.value,
            target.qemu_output(),
            dest_is_block=target.is_block,
            on_progress=self.progress.stage(60.0, 99.0),
            stall_timeout=self.spec.stall_timeout,
            cancel=self.cancel,
            verified=path,
        )
        self._remove_scratch()
        return self._commit(virtual)

    def _extract_archive(self) -> Phase:
        from importer.archive import extract_tar

        st = self.state
        stream = st.stream
        assert stream is not None

        def finish_stream() -> None:
            # tarfile stops at the end-of-archive blocks; the record padding after them is
            # still part of the body as sent: read it (an upload client is sending it; the
            # decompressor's limit bounds it) and hash it, then verify, all before the
            # files move into place.
            for _chunk in stream:
                pass
            if st.hasher is not None:
                st.hasher.verify()

        try:
            st.image_size = extract_tar(
                stream, self.spec.dest, limit=st.usable, before_commit=finish_stream
            )
        except RestartRequired as e:
            return self._restart(e)
        self.events.mark_drained()
        return Phase.COMPLETE

    def _remove_scratch(self) -> None:
        path = self.state.scratch_path
        if path:
            self.state.scratch_path = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # ---- result -------------------------------------------------------------------------

    def _report(self, walked: list[Phase]) -> TerminationReport:
        st = self.state
        elapsed = max(1e-6, time.monotonic() - self._started)
        transferred = st.served.count + st.ranged_fetched
        extra: dict[str, str] = {}
        rate_of = transferred
        if Phase.CONVERT_NBD in walked:
            # Rate the disk bytes produced: that is what the user waits for.
            rate_of = st.image_size or 0
            extra["read"] = "ranged (qemu-img through the pinned view, no scratch copy)"
        return TerminationReport(
            reason=Reason.COMPLETED,
            message="Import Complete",
            format=st.fmt.value if st.fmt else None,
            compression=st.compression.value if st.compression else None,
            virtual_size=st.virtual_size,
            bytes_transferred=transferred,
            bytes_written=st.image_size,
            duration_seconds=round(elapsed, 3),
            throughput_bytes_per_second=round(rate_of / elapsed, 1) if rate_of else None,
            scratch_used=Phase.DOWNLOAD_SCRATCH in walked,
            scratch_reason=st.scratch_reason,
            resumes=st.resumes_before
            + (st.reader.resumes if st.reader else 0)
            + st.ranged_resumes,
            checksum=str(self.spec.checksum.algorithm) if self.spec.checksum else None,
            preallocation_applied=True if st.preallocated else None,
            extra=extra,
        )


def _pinned_failure(view: Window, fn: Callable[[], T]) -> T:
    """Run `fn`; if a read of the pinned view failed, that failure is the real one.

    qemu-img only sees an I/O error when the range proxy cannot serve a read; the view kept
    the source's own failure (SourceChanged, Unauthorized, NetworkError...) to report.
    """
    try:
        result = fn()
    except ImportFailure as e:
        failure = view.failure
        if failure is not None and failure is not e:
            raise failure from e
        raise
    failure = view.failure
    if failure is not None:
        raise failure
    return result


def _os_failure(e: OSError, doing: str) -> ImportFailure:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ImportFailure(Reason.NO_SPACE, f"no space left while {doing}")
    return ImportFailure(Reason.INTERNAL, f"{doing} failed: {e.strerror}")

"""One clone's content, across the requests that carry it: header checks, extents, digest.

Runs in the session's worker thread; all it does is synchronous. A request's header must
continue the stream received so far (same content, mode and size; `start` == `covered`)
or it is a `Conflict` (409, nothing changes). The first header is checked against the
target before anything is written: the content type the server was started for, and a
size the volume can hold. END is accepted only when the digest of every extent received
matches; then the sink makes the content durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cdicontract import clonestream as cs
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from importer.errors import ImportFailure
from importer.targets.base import Target
from importer.transferspec import ContentType
from uploadproxy.server.clonesink import ArchiveSink, ImageSink, Sink
from uploadproxy.server.config import ServerConfig

log = logging.getLogger(__name__)

COMPLETE_MESSAGE = "Clone Complete"


class Conflict(Exception):
    """The request does not continue this stream (409); nothing was changed."""


@dataclass
class Totals:
    wire_bytes: int = 0
    data_bytes: int = 0
    requests: int = 0


class Receiver:
    def __init__(self, config: ServerConfig, target_factory: Callable[[str], Target]) -> None:
        self._config = config
        self._target_factory = target_factory
        self.header: cs.Header | None = None
        self.sink: Sink | None = None
        self.digest = cs.Digest()
        self.covered = 0
        self.totals = Totals()

    @property
    def size(self) -> int | None:
        return self.header.size if self.header is not None else None

    def percent(self) -> float:
        if self.header is None or self.header.size == 0:
            return 0.0
        return 100.0 * self.covered / self.header.size

    def apply(self, decoder: cs.Decoder, chunks: list[bytes]) -> TerminationReport | None:
        """Feed pieces of a request's body; the final report once END verified."""
        for chunk in chunks:
            report = self._apply(decoder, chunk)
            if report is not None:
                return report
        return None

    def _apply(self, decoder: cs.Decoder, chunk: bytes) -> TerminationReport | None:
        self.totals.wire_bytes += len(chunk)
        for event in decoder.feed(chunk):
            if isinstance(event, cs.Header):
                self._accept(event)
            elif isinstance(event, cs.Data):
                assert self.sink is not None
                self.sink.write(event.offset, event.data)
                self.digest.update(event.offset, event.data)
                self.covered = event.end
                self.totals.data_bytes += len(event.data)
            else:
                return self._end(event)
        return None

    def _accept(self, header: cs.Header) -> None:
        self.totals.requests += 1
        if self.header is not None:
            if not self.header.same_stream(header):
                raise Conflict("this is not the clone stream being received")
            if header.start != self.covered:
                raise Conflict(f"the clone stream continues at byte {self.covered}")
            log.info("clone stream resumed offset=%d", self.covered)
            return
        if header.start != 0:
            raise Conflict("the clone stream starts at byte 0")
        self.sink = self._open(header)
        self.header = header
        log.info(
            "clone stream started content=%s source_mode=%s size=%d",
            header.content.name.lower(),
            header.mode.volume_mode,
            header.size,
        )

    def _open(self, header: cs.Header) -> Sink:
        config = self._config
        wanted = (
            cs.Content.ARCHIVE
            if config.content_type is ContentType.ARCHIVE
            else cs.Content.KUBEVIRT
        )
        if header.content is not wanted:
            raise ImportFailure(
                Reason.INVALID_CONFIG,
                f"the source's content is {header.content.name.lower()}, "
                f"the target's is {config.content_type}",
            )
        if header.content is cs.Content.ARCHIVE:
            return ArchiveSink(config.archive_dir())
        target = self._target_factory(config.dest)
        usable = target.capacity(config.image_size, config.filesystem_overhead)
        if usable is not None and header.size > usable:
            raise ImportFailure(
                Reason.IMAGE_TOO_LARGE,
                f"the source ({header.size} bytes) is larger than the target can hold "
                f"({usable} bytes)",
            )
        return ImageSink(target, usable, config.preallocation)

    def _end(self, end: cs.End) -> TerminationReport:
        assert self.header is not None and self.sink is not None
        digest = self.digest.digest()
        if end.digest != digest:
            raise ImportFailure(
                Reason.CHECKSUM_MISMATCH,
                "the clone stream's digest does not match the data received",
            )
        self.sink.finish(self.header.size)
        self.covered = self.header.size
        return TerminationReport(
            reason=Reason.COMPLETED,
            message=COMPLETE_MESSAGE,
            virtual_size=self.header.size,
            bytes_transferred=self.totals.wire_bytes,
            bytes_written=self.totals.data_bytes,
            resumes=self.totals.requests - 1,
            checksum=f"{cs.DIGEST_NAME}:{digest.hex()}",
            preallocation_applied=(
                True if isinstance(self.sink, ImageSink) and self._config.preallocation
                else None),
        )

    def abort(self) -> None:
        if self.sink is not None:
            self.sink.abort()

"""`cdi-cloner`: stream the source volume to the clone target's upload server, then report.

Configured by the source pod's environment (cdicontract.clone: CLONER_UPLOAD_URL,
CLONER_CONTENT_TYPE, CLONER_VOLUME_MODE, CLONER_TLS_DIR, OWNER_UID,
CLONER_TERMINATION_LOG); `--source` overrides where the volume is (tests, humans).
Exit 0 only when the server confirmed the stream (digest verified, data synced); 1 when
the clone failed (the termination report says why); 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdicontract import clone, envvars
from cdicontract import clonestream as cs
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from cloner import sources
from cloner.errors import CloneFailure
from cloner.frames import FrameSource
from cloner.sender import Tls, send

log = logging.getLogger("cdi-cloner")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENV_RETRY_SECONDS = "CLONER_RETRY_SECONDS"
ENV_COMPRESSION_LEVEL = "CLONER_COMPRESSION_LEVEL"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ClonerConfig:
    url: str
    content: cs.Content
    mode: cs.Mode
    source: str
    tls: Tls
    owner_uid: str
    termination_log: str
    retry_seconds: float = 300.0
    level: int = 1


def _default_source(content: cs.Content, mode: cs.Mode) -> str:
    if mode is cs.Mode.BLOCK:
        return envvars.DEFAULT_BLOCK_DEST
    if content is cs.Content.ARCHIVE:
        return envvars.DEFAULT_DATA_DIR
    return envvars.DEFAULT_FILE_DEST


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> ClonerConfig:
    p = argparse.ArgumentParser(prog="cdi-cloner", description=__doc__.splitlines()[0])
    p.add_argument("--source", help="the image file, block device or (archive) directory")
    a = p.parse_args(list(argv))
    url = environ.get(clone.ENV_UPLOAD_URL, "").strip()
    if not url.startswith("https://"):
        raise ConfigError(f"{clone.ENV_UPLOAD_URL} must be an https:// URL, got {url[:80]!r}")
    content_text = environ.get(clone.ENV_CONTENT_TYPE, "").strip().lower() or "kubevirt"
    try:
        content = cs.Content[content_text.upper()]
    except KeyError:
        raise ConfigError(
            f"{clone.ENV_CONTENT_TYPE} must be kubevirt or archive, got {content_text[:40]!r}"
        ) from None
    try:
        mode = cs.Mode.from_volume_mode(environ.get(clone.ENV_VOLUME_MODE, "") or "Filesystem")
    except ValueError as e:
        raise ConfigError(f"{clone.ENV_VOLUME_MODE}: {e}") from None
    if content is cs.Content.ARCHIVE and mode is cs.Mode.BLOCK:
        raise ConfigError("archive content needs a Filesystem source")
    tls_dir = Path(environ.get(clone.ENV_TLS_DIR, "").strip() or clone.TLS_DIR)
    try:
        retry = float(environ.get(ENV_RETRY_SECONDS, "") or 300.0)
        level = int(environ.get(ENV_COMPRESSION_LEVEL, "") or 1)
    except ValueError:
        raise ConfigError(
            f"{ENV_RETRY_SECONDS} / {ENV_COMPRESSION_LEVEL} must be numbers"
        ) from None
    return ClonerConfig(
        url=url,
        content=content,
        mode=mode,
        source=a.source or _default_source(content, mode),
        tls=Tls(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key"), str(tls_dir / "ca.crt")),
        owner_uid=environ.get(clone.ENV_OWNER_UID, "").strip(),
        termination_log=environ.get(clone.ENV_TERMINATION_LOG, "").strip()
        or envvars.DEFAULT_TERMINATION_LOG,
        retry_seconds=retry,
        level=max(0, min(level, 19)),
    )


def write_report(path: str, report: TerminationReport) -> None:
    try:
        with open(path, "w") as f:
            f.write(report.to_json())
    except OSError as e:
        log.warning("cannot write termination report path=%s error=%s", path, e.strerror)


def _frame_source(config: ClonerConfig, fd: int | None) -> FrameSource:
    if config.content is cs.Content.ARCHIVE:
        if not os.path.isdir(config.source):
            raise CloneFailure(
                Reason.SOURCE_NOT_FOUND, f"the source {config.source} is not a directory"
            )
        root = config.source
        size = sources.tar_size(root)

        def tar(start: int) -> Iterator[tuple[int, bytes]]:
            return sources.tar_extents(root, size, start)

        return FrameSource(cs.Header(config.content, config.mode, size), tar, level=config.level)
    assert fd is not None
    size = sources.image_size(fd)

    def image(start: int) -> Iterator[tuple[int, bytes]]:
        return sources.image_extents(fd, size, start)

    return FrameSource(cs.Header(config.content, config.mode, size), image, level=config.level)


def run(config: ClonerConfig) -> TerminationReport:
    began = time.monotonic()
    fd = None if config.content is cs.Content.ARCHIVE else sources.open_image(config.source)
    try:
        source = _frame_source(config, fd)
        log.info(
            "cloning source=%s content=%s mode=%s size=%d",
            config.source,
            config.content.name.lower(),
            config.mode.volume_mode,
            source.size,
        )
        outcome = send(config.url, config.tls, source, deadline_seconds=config.retry_seconds)
    finally:
        if fd is not None:
            os.close(fd)
    if not outcome.report.ok:
        raise CloneFailure(outcome.report.reason, outcome.report.message)
    elapsed = time.monotonic() - began
    return TerminationReport(
        reason=Reason.COMPLETED,
        message="Clone Complete",
        virtual_size=source.size,
        bytes_transferred=source.counters.wire_bytes,
        bytes_written=source.counters.data_bytes,
        duration_seconds=round(elapsed, 3),
        throughput_bytes_per_second=round(source.size / elapsed, 1) if elapsed > 0 else None,
        resumes=outcome.resumes,
        checksum=outcome.report.checksum,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CLONER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        config = parse(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as e:
        print(f"cdi-cloner: {e}", file=sys.stderr)
        write_report(
            os.environ.get(clone.ENV_TERMINATION_LOG) or envvars.DEFAULT_TERMINATION_LOG,
            TerminationReport(Reason.INVALID_CONFIG, str(e)),
        )
        return EXIT_USAGE
    try:
        report = run(config)
    except CloneFailure as e:
        log.error("clone failed reason=%s message=%s", e.reason, e.message)
        write_report(config.termination_log, TerminationReport(e.reason, e.message))
        return EXIT_FAILED
    log.info(
        "clone complete size=%s sent=%s data=%s resumes=%s",
        report.virtual_size,
        report.bytes_transferred,
        report.bytes_written,
        report.resumes,
    )
    write_report(config.termination_log, report)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

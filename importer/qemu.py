"""qemu-img, run safely: an explicit driver tree, no backing file, limits and a sandbox.

`info` inspects an image (a local path or an NBD URI) and `check_safe` refuses images
that would make qemu-img open other files. `convert` writes raw data into the target
under a stall watchdog, retrying a stuck run, and maps qemu-img's failures onto
termination reasons.

Three layers keep qemu-img from opening anything but the image and the target:
- every input is an explicit driver tree (`importer.drivertree`): the format, `backing`
  nulled, the protocol named (file or nbd), so no header field is followed as a backing
  file and no name is parsed as a protocol;
- `check_safe` (`importer.qemuinfo`) refuses what a tree cannot null (qcow2 data files,
  VMDK extents) from `qemu-img info`, before convert;
- every run is confined by Landlock (`importer.sandbox`) to the libraries, its input and
  its output, without TCP, should a driver open something all the same.

Why the options (measured, see bench/bench_convert_opts.py and the report):
- `-W` (out-of-order writes) and `-m 16` coroutines keep several NBD requests in flight;
- `-t none` (O_DIRECT) on the target keeps the page cache, and so the pod's cgroup
  memory, flat (CDI issue #2110), where the target supports it; `writeback` otherwise;
- file targets are created by qemu-img itself (sparse, and it knows the new file reads as
  zeros; we only make an empty file first, for the sandbox's sake); a pre-created or block
  target gets `-n`, plus `--target-is-zero` only when the caller vouches that it reads as
  zeros.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager

from cdicontract.reasons import Reason
from importer import drivertree, sandbox
from importer.errors import ImportFailure, TransientSourceError
from importer.limits import CONVERT_LIMITS, INFO_LIMITS, Limits
from importer.qemuinfo import QemuInfo, check_safe, own_filenames, parse_info, unsafe_reason
from importer.watchdog import Outcome, run_watched

QEMU_IMG = "qemu-img"
FORMATS = frozenset({"raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi"})
COROUTINES = 16
_NBD_PREFIXES = ("nbd://", "nbd+unix://", "nbds://")
# glibc gives each thread of qemu's I/O pool its own 64 MiB malloc arena, all counted
# against RLIMIT_AS; two arenas are plenty for qemu-img and keep the cap meaningful.
_CHILD_ENV_EXTRA = {"MALLOC_ARENA_MAX": "2", "LC_ALL": "C"}

Source = str | Callable[[], AbstractContextManager[str]]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    env.update(_CHILD_ENV_EXTRA)
    return env


def is_nbd_uri(filename: str) -> bool:
    return filename.startswith(_NBD_PREFIXES)


def qemu_filename(filename: str) -> str:
    """The target filename as qemu-img should see it.

    qemu treats "json:{...}" and "proto:..." prefixes as option strings, so a local path
    is made absolute: a path starting with '/' is never parsed as anything but a file.
    (Inputs never get here: they are driver trees, see `source_filename`.)
    """
    return os.path.abspath(filename)


def source_filename(source: str, fmt: str) -> str:
    """The `json:` driver tree qemu-img opens for `source` (a path or nbd+unix URI).

    Raises ImportFailure(INTERNAL) for a URI we never produce (TCP/TLS NBD).
    """
    try:
        return drivertree.image_filename(source, fmt)
    except ValueError as e:
        raise ImportFailure(Reason.INTERNAL, f"cannot read the image from there: {e}") from e


def _local_inputs(source: str) -> tuple[str, ...]:
    """Files the sandbox lets qemu-img read for `source` (none for a Unix socket)."""
    return () if is_nbd_uri(source) else (os.path.abspath(source),)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ImportFailure(Reason.UNSUPPORTED_FORMAT, f"format {fmt!r} is not one we convert")


def first_error_line(lines: Sequence[str]) -> str:
    """The line that explains a qemu-img failure: the first 'qemu-img:' line, else the first."""
    for line in lines:
        if line.startswith("qemu-img:"):
            return line
    return lines[0] if lines else "no error output"


def info_command(filename: str, fmt: str) -> list[str]:
    """`qemu-img info` argv: an explicit driver tree (no probing, no backing), JSON, shared lock.

    No `-f`: the tree's driver is the format (and `-f` would override it).
    `--force-share` lets info read an image another process holds open (a scratch file
    still being closed) and takes no lock on NBD exports.
    """
    return [QEMU_IMG, "info", "--output=json", "--force-share", source_filename(filename, fmt)]


def _limit_hit(outcome: Outcome, limits: Limits) -> bool:
    """Whether the child died of one of our limits rather than of its own error."""
    if outcome.timed_out:
        return True
    if outcome.returncode in (-9, -24) and limits.cpu_seconds is not None:
        return True  # SIGKILL / SIGXCPU from RLIMIT_CPU
    if limits.address_space is None:
        return False
    text = "\n".join(outcome.stderr_tail).lower()
    return outcome.returncode < 0 or any(
        s in text for s in ("cannot allocate memory", "failed to allocate", "out of memory")
    )


_NBD_TRANSPORT_ERRORS = (
    "Requested export not available",
    "Failed to connect",
    "Connection refused",
    "Input/output error",
    "server reported",
    "Connection reset",
)


_OPEN = "Could not open '"
_DENIED = "': Permission denied"


def denied_reference(lines: Sequence[str], own: Collection[str]) -> bool:
    """Whether qemu-img was denied opening a file that is not one of `own` (pure).

    qemu-img opens nothing but its input and output unless the image points elsewhere (a
    data file, an extent); under the sandbox such an open fails with EACCES, reported as
    "Could not open 'NAME': Permission denied". That is an unsafe image, not a broken one.
    """
    for line in lines:
        end = line.rfind(_DENIED)
        start = line.rfind(_OPEN, 0, end) if end >= 0 else -1
        if start >= 0 and line[start + len(_OPEN) : end] not in own:
            return True
    return False


_DENIED_MESSAGE = "image references a file outside itself (the sandbox denied opening it)"


def info_failure(outcome: Outcome, filename: str, limits: Limits) -> ImportFailure:
    """Why `qemu-img info` failed, as a reason (pure).

    Over NBD, a source that stops answering or drops the connection is a network
    problem worth a retry, not a bad image: it must not fail the DataVolume for good.
    """
    line = first_error_line(outcome.stderr_tail)
    if denied_reference(outcome.stderr_tail, _local_inputs(filename)):
        return ImportFailure(Reason.UNSAFE_IMAGE, f"refusing image: {_DENIED_MESSAGE}")
    if is_nbd_uri(filename):
        if outcome.timed_out:
            return ImportFailure(
                Reason.STALLED, f"qemu-img info got no answer within {limits.wall_seconds:g}s"
            )
        if any(e in line for e in _NBD_TRANSPORT_ERRORS):
            return TransientSourceError(f"reading the image over NBD failed: {line}")
    if _limit_hit(outcome, limits):
        return ImportFailure(Reason.INVALID_IMAGE, "qemu-img info exceeded its resource limits")
    return ImportFailure(Reason.INVALID_IMAGE, f"qemu-img info failed: {line}")


def info(filename: str, fmt: str, *, limits: Limits = INFO_LIMITS) -> QemuInfo:
    """`qemu-img info` of `filename` (a path or NBD URI) read as `fmt`, never probed,
    confined to reading that file (or connecting to that socket)."""
    _check_format(fmt)
    argv = info_command(filename, fmt)
    policy = sandbox.qemu_policy(inputs=_local_inputs(filename))
    with sandbox.prepare(policy) as confinement:
        outcome = run_watched(
            argv, limits=limits, capture_stdout=True, env=_env(), confine=confinement.restrict
        )
    if outcome.returncode != 0:
        raise info_failure(outcome, filename, limits)
    try:
        qi = parse_info(outcome.stdout)
    except ValueError as e:
        raise ImportFailure(Reason.INVALID_IMAGE, f"qemu-img info: {e}") from e
    if qi.format != fmt:
        raise ImportFailure(
            Reason.INVALID_IMAGE, f"qemu-img read the image as {qi.format}, not {fmt}"
        )
    return qi


def direct_io_supported(dest: str, *, dest_is_block: bool) -> bool:
    """Whether the target accepts O_DIRECT (tmpfs and some FUSE filesystems do not)."""
    if dest_is_block:
        probe, flags = dest, os.O_RDONLY
    else:
        probe = os.path.join(os.path.dirname(os.path.abspath(dest)), f".odirect-{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(probe, flags | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    if not dest_is_block:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return True


def convert_command(
    src: str,
    fmt: str,
    dest: str,
    *,
    create: bool,
    target_is_zero: bool,
    direct: bool,
    coroutines: int = COROUTINES,
) -> list[str]:
    """The `qemu-img convert` argv (a pure function; the choices are explained above).

    Never `-B`/`-o backing_file`, never probing: the source is an explicit driver tree
    (its driver is the format, so no `-f`) and `-O raw` is explicit. The target stays a
    plain absolute path: qemu-img creates it, or picks host_device for a block device.
    """
    argv = [QEMU_IMG, "convert", "-p", "-O", "raw"]
    argv += ["-t", "none" if direct else "writeback", "-T", "none" if direct else "writeback"]
    argv += ["-W", "-m", str(coroutines)]
    if not create:
        argv.append("-n")
        if target_is_zero:
            argv.append("--target-is-zero")
    argv += [source_filename(src, fmt), qemu_filename(dest)]
    return argv


def _source_cache(argv: list[str], src: str) -> list[str]:
    """Source cache mode: O_DIRECT reads are pointless on an NBD socket; on a local file
    (scratch) they avoid filling the page cache with data read once."""
    if is_nbd_uri(src) or not _direct_ok_for_read(src):
        i = argv.index("-T")
        argv[i + 1] = "writeback"
    return argv


def _direct_ok_for_read(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def _fixed(src: str) -> Iterator[str]:
    yield src


def _create_empty(dest: str) -> None:
    """Make the file qemu-img is about to create, so the sandbox can grant it that one file.

    qemu-img's own create then truncates it to 0 and to the virtual size (sparse, known
    to read as zeros): the same file it would have made. Failing here is what qemu-img
    would have reported.
    """
    try:
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as e:
        reason = Reason.NO_SPACE if e.errno in (errno.ENOSPC, errno.EDQUOT) else (
            Reason.CONVERSION_FAILED
        )
        raise ImportFailure(reason, f"cannot create the target: {e.strerror}") from e


def classify_failure(lines: Sequence[str], returncode: int) -> tuple[Reason, str]:
    """Map a failed convert's stderr onto a reason and a one-line message (pure)."""
    line = first_error_line(lines)
    text = "\n".join(lines)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return Reason.NO_SPACE, f"target is full: {line}"
    if returncode < 0 and not lines:
        return Reason.CONVERSION_FAILED, f"qemu-img convert killed by signal {-returncode}"
    return Reason.CONVERSION_FAILED, f"qemu-img convert failed: {line}"


def _is_read_error(lines: Sequence[str]) -> bool:
    return any("error while reading" in line for line in lines)


def convert(
    src: Source,
    fmt: str,
    dest: str,
    *,
    dest_is_block: bool,
    dest_exists_zeroed: bool = False,
    on_progress: Callable[[float], None] | None = None,
    stall_timeout: float = 120.0,
    attempts: int = 3,
    limits: Limits = CONVERT_LIMITS,
    cancel: threading.Event | None = None,
    verified: str | None = None,
) -> None:
    """Convert `src` (read as `fmt`) to raw in `dest`, retrying stalled runs.

    `src` is a path, an NBD URI, or a factory of context managers yielding one (e.g.
    `importer.nbd.nbd_source(access, workdir=...)`): with a factory every attempt gets a
    fresh source, so a dead or hung nbdkit is replaced, and a run that failed *reading*
    the source is retried too. Progress (0..100) restarts from 0 on a retry.

    The caller checks the image first (`info` + `check_safe`); convert re-checks every
    source it has not seen checked, so that it can never follow a backing file on its own.
    `verified` names the one source (path or NBD URI, same server) the caller checked:
    an attempt reading exactly it skips the re-check (one qemu-img start and a round of
    header reads over the network fewer).
    Raises ImportFailure: STALLED after `attempts` stalled runs, NO_SPACE, CONVERSION_FAILED,
    CANCELLED when cancelled.
    """
    _check_format(fmt)
    factory: Callable[[], AbstractContextManager[str]]
    if isinstance(src, str):
        fixed = src

        def factory() -> AbstractContextManager[str]:
            return _fixed(fixed)

        remote = False
    else:
        factory, remote = src, True
    if dest_is_block:
        try:
            if not stat.S_ISBLK(os.stat(dest).st_mode):
                raise ImportFailure(Reason.INVALID_CONFIG, f"{dest} is not a block device")
        except FileNotFoundError as e:
            raise ImportFailure(Reason.INVALID_CONFIG, f"block target {dest} missing") from e
    create = not dest_is_block and not dest_exists_zeroed
    direct = direct_io_supported(dest, dest_is_block=dest_is_block)
    try:
        _convert_attempts(
            factory, fmt, dest, remote=remote, create=create, zeroed=dest_exists_zeroed,
            dest_is_block=dest_is_block,
            direct=direct, on_progress=on_progress, stall_timeout=stall_timeout,
            attempts=attempts, limits=limits, cancel=cancel, verified=verified,
        )
    except BaseException:
        if create:
            # qemu-img made this file; a partial conversion must not look like a disk.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        raise


def _convert_attempts(
    factory: Callable[[], AbstractContextManager[str]],
    fmt: str,
    dest: str,
    *,
    remote: bool,
    create: bool,
    zeroed: bool,
    dest_is_block: bool,
    direct: bool,
    on_progress: Callable[[float], None] | None,
    stall_timeout: float,
    attempts: int,
    limits: Limits,
    cancel: threading.Event | None,
    verified: str | None,
) -> None:
    failure: ImportFailure | None = None
    for _attempt in range(max(1, attempts)):
        with factory() as uri:
            try:
                if uri != verified:
                    check_safe(info(uri, fmt))
            except ImportFailure as e:
                if remote and e.reason in (Reason.STALLED, Reason.NETWORK_ERROR):
                    failure = e  # a fresh source on the next attempt may answer
                    continue
                raise
            argv = _source_cache(
                convert_command(
                    uri, fmt, dest, create=create, target_is_zero=zeroed, direct=direct
                ),
                uri,
            )
            inputs = _local_inputs(uri)
            if create:
                _create_empty(dest)
            policy = sandbox.qemu_policy(
                inputs=inputs, output=os.path.abspath(dest), output_is_block=dest_is_block
            )
            with sandbox.prepare(policy) as confinement:
                outcome = run_watched(
                    argv,
                    limits=limits,
                    stall_timeout=stall_timeout,
                    on_progress=on_progress,
                    cancel=cancel,
                    env=_env(),
                    confine=confinement.restrict,
                )
        if outcome.returncode == 0 and not (outcome.stalled or outcome.cancelled):
            if on_progress is not None and outcome.last_progress != 100.0:
                on_progress(100.0)
            return
        if outcome.cancelled:
            raise ImportFailure(Reason.CANCELLED, "conversion cancelled")
        if outcome.stalled:
            failure = ImportFailure(
                Reason.STALLED,
                f"qemu-img convert made no progress for {stall_timeout:g}s "
                f"(at {outcome.last_progress or 0.0:.2f}%), {max(1, attempts)} attempts",
            )
            continue
        if denied_reference(outcome.stderr_tail, (*inputs, os.path.abspath(dest))):
            raise ImportFailure(Reason.UNSAFE_IMAGE, f"refusing {fmt} image: {_DENIED_MESSAGE}")
        if _limit_hit(outcome, limits):
            raise ImportFailure(
                Reason.CONVERSION_FAILED, "qemu-img convert exceeded its resource limits"
            )
        reason, message = classify_failure(outcome.stderr_tail, outcome.returncode)
        failure = ImportFailure(reason, message)
        if remote and reason is Reason.CONVERSION_FAILED and _is_read_error(outcome.stderr_tail):
            continue  # the source broke mid-way: a fresh NBD server may do better
        raise failure
    assert failure is not None
    raise failure


__all__ = [
    "CONVERT_LIMITS",
    "INFO_LIMITS",
    "QemuInfo",
    "check_safe",
    "classify_failure",
    "convert",
    "convert_command",
    "denied_reference",
    "info",
    "own_filenames",
    "parse_info",
    "source_filename",
    "unsafe_reason",
]

"""Landlock confinement for a child process: only the paths it needs, no TCP.

qemu-img parses untrusted bytes. The driver trees in `importer.qemu` keep it from
*following* a reference, but a bug in a format driver (or a reference we cannot null,
such as a qcow2 external data file or VMDK extents) could still make it open files.
Landlock lets an unprivileged process (no user namespace, no capability: the importer
runs as a non-root user in a pod) drop access to everything but an allow-list, and the
restriction is inherited across exec. It costs a handful of syscalls per run.

The ruleset is built in the parent (`prepare`): opening the rule paths and adding rules
allocates and may fail, which must not happen between fork and exec. The child only
calls prctl(PR_SET_NO_NEW_PRIVS) and landlock_restrict_self on the inherited ruleset
fd (`Confinement.restrict`); close_fds runs after preexec_fn, so the fd (O_CLOEXEC)
needs no pass_fds and never reaches the exec'd program.

Best effort by design: a kernel without Landlock runs the child unconfined (one warning),
and an older ABI restricts what that ABI knows (no TCP rules before ABI 4). Rights newer
than this module are left unhandled, i.e. allowed, so a kernel upgrade never breaks a run.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The Landlock syscalls have the same numbers on every architecture of the unified
# syscall table, x86_64 and aarch64 among them (alpha and mips differ; we build for neither).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38


class Fs(enum.IntFlag):
    """LANDLOCK_ACCESS_FS_* (include/uapi/linux/landlock.h)."""

    EXECUTE = 1 << 0
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # ABI 2
    TRUNCATE = 1 << 14  # ABI 3
    IOCTL_DEV = 1 << 15  # ABI 5


class Net(enum.IntFlag):
    """LANDLOCK_ACCESS_NET_* (ABI 4)."""

    BIND_TCP = 1 << 0
    CONNECT_TCP = 1 << 1


class Scope(enum.IntFlag):
    """LANDLOCK_SCOPE_* (ABI 6): IPC the domain may not reach out of."""

    ABSTRACT_UNIX_SOCKET = 1 << 0
    SIGNAL = 1 << 1


FILE_RIGHTS = Fs.EXECUTE | Fs.WRITE_FILE | Fs.READ_FILE | Fs.TRUNCATE | Fs.IOCTL_DEV
"""The only rights a rule on a non-directory may carry (the kernel says EINVAL otherwise)."""
READ = Fs.READ_FILE | Fs.READ_DIR
READ_EXEC = READ | Fs.EXECUTE

_FS_BY_ABI = {
    1: Fs(Fs.MAKE_SYM * 2 - 1),
    2: Fs(Fs.REFER * 2 - 1),
    3: Fs(Fs.TRUNCATE * 2 - 1),
    4: Fs(Fs.TRUNCATE * 2 - 1),
    5: Fs(Fs.IOCTL_DEV * 2 - 1),
}
_NET_ABI = 4
_SCOPE_ABI = 6


def handled_fs(abi: int) -> Fs:
    """Every filesystem right the kernel of ABI `abi` can restrict (pure)."""
    if abi < 1:
        return Fs(0)
    return _FS_BY_ABI[min(abi, max(_FS_BY_ABI))]


def handled_net(abi: int) -> Net:
    return Net.BIND_TCP | Net.CONNECT_TCP if abi >= _NET_ABI else Net(0)


def handled_scope(abi: int) -> Scope:
    return Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL if abi >= _SCOPE_ABI else Scope(0)


@dataclass(frozen=True)
class Rule:
    """`access` beneath `path` (the path itself when it is not a directory)."""

    path: str
    access: Fs
    optional: bool = False
    """A path that may not exist on every system (/lib64, a sysfs node): skipped if absent."""


@dataclass(frozen=True)
class Policy:
    """What a confined process may do; everything else (files, TCP) is denied."""

    rules: tuple[Rule, ...]


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


# Sizes of landlock_ruleset_attr per ABI: the kernel rejects fields it does not know
# unless they are zero, but an older kernel also rejects a *larger* struct (E2BIG).
def _attr_size(abi: int) -> int:
    if abi >= _SCOPE_ABI:
        return 24
    if abi >= _NET_ABI:
        return 16
    return 8


class _Libc:
    """The three Landlock syscalls and prctl, through libc's syscall(2).

    Every variadic argument is passed as a full `long`: syscall(2) reads longs, and a
    32-bit ctypes value would leave the upper half of the register undefined.
    """

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall: Callable[..., int] = libc.syscall
        self.syscall.restype = ctypes.c_long
        self.prctl: Callable[..., int] = libc.prctl

    def abi(self) -> tuple[int, int]:
        """(ABI version, errno): (0, ENOSYS/EOPNOTSUPP) when Landlock is unavailable."""
        rc = self.syscall(
            ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
            ctypes.c_long(_CREATE_RULESET_VERSION),
        )
        if rc < 0:
            return 0, ctypes.get_errno()
        return int(rc), 0

    def create_ruleset(self, attr: _RulesetAttr, size: int) -> int:
        rc = self.syscall(
            ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
            ctypes.c_long(0),
        )
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"landlock_create_ruleset: {os.strerror(e)}")
        return int(rc)

    def add_path_rule(self, ruleset: int, access: int, fd: int) -> None:
        attr = _PathBeneathAttr(access, fd)
        rc = self.syscall(
            ctypes.c_long(_SYS_ADD_RULE), ctypes.c_long(ruleset),
            ctypes.c_long(_RULE_PATH_BENEATH), ctypes.byref(attr), ctypes.c_long(0),
        )
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"landlock_add_rule: {os.strerror(e)}")


@functools.cache
def _libc() -> _Libc:
    return _Libc()


_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.E2BIG})


@functools.cache
def _unusable(err: int) -> None:
    log.warning(
        "helpers run without a sandbox: Landlock refused the ruleset error=%s",
        errno.errorcode.get(err, str(err)),
    )


def weakness(abi: int, err: int) -> str | None:
    """What a kernel of Landlock ABI `abi` (0: none, `err` from probing) cannot enforce."""
    if abi < 1:
        return f"no Landlock ({errno.errorcode.get(err, str(err))}): no file or TCP confinement"
    if abi < _NET_ABI:
        return "Landlock before ABI 4: files confined, TCP not"
    return None


@functools.cache
def kernel_abi() -> int:
    """The running kernel's Landlock ABI, 0 without Landlock (what it lacks is logged once)."""
    try:
        abi, err = _libc().abi()
    except (OSError, AttributeError):  # no usable libc syscall(): as good as no Landlock
        abi, err = 0, errno.ENOSYS
    why = weakness(abi, err)
    if why is not None:
        log.warning("helpers run with a weaker sandbox abi=%d lacking=%r", abi, why)
    return abi


class Confinement:
    """A prepared ruleset; `restrict` applies it to the calling (child) process.

    Without a ruleset (no Landlock), `restrict` does nothing.
    """

    def __init__(self, ruleset_fd: int | None, abi: int) -> None:
        self.ruleset_fd = ruleset_fd
        self.abi = abi
        if ruleset_fd is not None:
            # Everything the child needs, made here: the child only makes two calls.
            lib = _libc()
            self._syscall, self._prctl = lib.syscall, lib.prctl
            self._no_new_privs = (
                ctypes.c_int(_PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), ctypes.c_ulong(0),
                ctypes.c_ulong(0), ctypes.c_ulong(0),
            )
            self._restrict_self = (
                ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_long(ruleset_fd), ctypes.c_long(0)
            )

    @property
    def active(self) -> bool:
        return self.ruleset_fd is not None

    def restrict(self) -> None:
        """Child side, between fork and exec: two syscalls with arguments made beforehand.

        A failure here cannot be logged (no logging in the child): it is written to
        stderr, which the runner keeps, and the child exits rather than run unconfined
        against a kernel that said it could confine it.
        """
        if self.ruleset_fd is None:
            return
        if self._prctl(*self._no_new_privs) != 0 or self._syscall(*self._restrict_self) != 0:
            os.write(2, b"sandbox: landlock_restrict_self failed\n")
            os._exit(126)


@contextmanager
def prepare(policy: Policy, *, abi: int | None = None) -> Iterator[Confinement]:
    """Build the Landlock ruleset for `policy` (in the parent); closed on exit.

    `abi` caps the ABI used (tests use it to check the behaviour of older kernels and of
    none, 0); by default the kernel's own. Rule paths that do not exist and are optional
    are skipped; a required one that does not exist raises FileNotFoundError.
    """
    kernel = kernel_abi()
    use = kernel if abi is None else min(abi, kernel)
    if use < 1:
        yield Confinement(None, 0)
        return
    lib = _libc()
    fs, net, scope = handled_fs(use), handled_net(use), handled_scope(use)
    attr = _RulesetAttr(int(fs), int(net), int(scope))
    try:
        ruleset = lib.create_ruleset(attr, _attr_size(use))
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        # A kernel that announced an ABI but refuses its ruleset: as good as none.
        _unusable(e.errno)
        yield Confinement(None, 0)
        return
    try:
        for rule in policy.rules:
            _add(lib, ruleset, rule, fs)
        yield Confinement(ruleset, use)
    finally:
        os.close(ruleset)


def _add(lib: _Libc, ruleset: int, rule: Rule, handled: Fs) -> None:
    try:
        fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if rule.optional:
            return
        raise
    try:
        access = rule.access & handled
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_RIGHTS
        if access:
            lib.add_path_rule(ruleset, int(access), fd)
    finally:
        os.close(fd)


# --- what qemu-img needs --------------------------------------------------------------

RUNTIME: tuple[Rule, ...] = (
    # All optional: a system without one of them is no reason to fail an import (qemu-img
    # would then fail or warn by itself).
    # The program, the loader and shared libraries. On merged-/usr systems /lib and /bin
    # are symlinks into /usr (Landlock checks the resolved path); elsewhere they are real
    # directories.
    Rule("/usr", READ_EXEC, optional=True),
    Rule("/lib", READ_EXEC, optional=True),
    Rule("/lib64", READ_EXEC, optional=True),
    Rule("/lib32", READ_EXEC, optional=True),
    Rule("/bin", READ_EXEC, optional=True),
    Rule("/etc/ld.so.cache", Fs.READ_FILE, optional=True),  # else a slower library search
    Rule("/etc/ld.so.preload", Fs.READ_FILE, optional=True),
    # qemu probes for OFD locks by locking /dev/null (O_RDWR); denied, it warns on every
    # run and falls back to process-wide POSIX locks.
    Rule("/dev/null", Fs.READ_FILE | Fs.WRITE_FILE, optional=True),
    # glib seeds the generator of qemu's node names from it (g_rand_new; denied, it falls
    # back to the clock). It tells nothing about the system.
    Rule("/dev/urandom", Fs.READ_FILE, optional=True),
)
"""Measured with strace on Debian 12's qemu-img 7.2. Deliberately *not* allowed, with no
visible effect on qemu-img: /proc (libnuma reads /proc/self/status, but /proc also holds
the importer's own environ and credentials), /sys/devices/system (libnuma topology),
/etc/gnutls (TLS priorities; we never use TLS in qemu-img), locales (LC_ALL=C)."""

OUTPUT_FILE = Fs.READ_FILE | Fs.WRITE_FILE | Fs.TRUNCATE
"""A file target: qemu-img opens it O_RDWR and, when it "creates" it, truncates it to 0 and
then to the virtual size. The caller makes the (empty) file first, so no right is needed
on its directory, where other files may live."""
OUTPUT_BLOCK = Fs.READ_FILE | Fs.WRITE_FILE | Fs.IOCTL_DEV
"""A block target: qemu-img asks the device its sizes and zeroes ranges with ioctls."""


def qemu_policy(
    *,
    inputs: Sequence[str] = (),
    output: str | None = None,
    output_is_block: bool = False,
    extra: Sequence[Rule] = (),
) -> Policy:
    """The allow-list for one qemu-img run (a pure function of its inputs).

    `inputs`: local files qemu-img reads (read access to each file, not its directory,
    so a reference to a sibling file stays denied). An NBD source over a Unix socket needs
    no rule: Landlock (up to ABI 7, kernel 6.18) does not govern connecting to a pathname
    socket. `output`: the target file (which must exist: see OUTPUT_FILE) or block device.
    The caller's paths are optional rules: when one is missing, qemu-img says so itself
    (and, with no rule, cannot open whatever appears there later).
    """
    rules = list(RUNTIME)
    rules += [Rule(p, Fs.READ_FILE, optional=True) for p in inputs]
    if output is not None:
        rules.append(Rule(output, OUTPUT_BLOCK if output_is_block else OUTPUT_FILE, optional=True))
    rules += extra
    return Policy(tuple(rules))


__all__ = [
    "Confinement",
    "Fs",
    "Net",
    "Policy",
    "Rule",
    "handled_fs",
    "kernel_abi",
    "prepare",
    "qemu_policy",
    "weakness",
]

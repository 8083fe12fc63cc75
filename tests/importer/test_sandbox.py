"""The Landlock sandbox around the real qemu-img: what it may and may not reach.

Each denial is shown next to a control run without the sandbox, so a test can never pass
because the attempt was wrong rather than denied. qemu-img is run through the same
runner as in production (`run_watched` with a `confine` hook), with argv that bypass
`importer.qemu`'s driver trees and checks on purpose.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer import drivertree, qemu, sandbox
from importer.limits import INFO_LIMITS
from importer.sandbox import Fs, Rule
from importer.watchdog import Outcome, run_watched
from tests.importer.test_qemu_info import children, make_image

PAST = 1_000_000
ABI = sandbox.kernel_abi()
needs_landlock = pytest.mark.skipif(ABI < 4, reason="kernel without Landlock ABI >= 4")


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = children()
    yield
    assert children() - before == set(), "qemu-img left running"


def run(argv: list[str], policy: sandbox.Policy | None, *, abi: int | None = None) -> Outcome:
    """qemu-img under `policy` (None: unconfined), as `importer.qemu` runs it."""
    if policy is None:
        return run_watched(argv, limits=INFO_LIMITS, capture_stdout=True)
    with sandbox.prepare(policy, abi=abi) as confinement:
        return run_watched(
            argv, limits=INFO_LIMITS, capture_stdout=True, confine=confinement.restrict
        )


def raw_file(path: Path | str) -> str:
    return drivertree.json_filename(
        {"driver": "raw", "file": {"driver": "file", "filename": str(path)}}
    )


def info_argv(name: str) -> list[str]:
    return ["qemu-img", "info", "--output=json", "-U", name]


def stderr(outcome: Outcome) -> str:
    return "\n".join(outcome.stderr_tail)


def watch(path: Path) -> Path:
    os.utime(path, (PAST, path.stat().st_mtime))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """An image qemu-img may read and a secret next to it that it may not."""
    allowed = make_image(tmp_path / "allowed.qcow2", "qcow2")
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"top secret" * 1000)
    return allowed, secret


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("abi", "newest"),
    [(0, None), (1, Fs.MAKE_SYM), (2, Fs.REFER), (3, Fs.TRUNCATE), (4, Fs.TRUNCATE),
     (5, Fs.IOCTL_DEV), (7, Fs.IOCTL_DEV), (99, Fs.IOCTL_DEV)],
)
def test_each_abi_handles_the_rights_it_knows(abi: int, newest: Fs | None) -> None:
    handled = sandbox.handled_fs(abi)
    if newest is None:
        assert handled == 0
    else:
        assert newest in handled and Fs.EXECUTE in handled
        assert handled == newest * 2 - 1  # every right up to the newest, nothing beyond
    assert bool(sandbox.handled_net(abi)) is (abi >= 4)


def test_weaknesses_are_named() -> None:
    assert "ENOSYS" in (sandbox.weakness(0, errno.ENOSYS) or "")
    assert errno.errorcode[errno.EOPNOTSUPP] in (sandbox.weakness(0, errno.EOPNOTSUPP) or "")
    assert "TCP" in (sandbox.weakness(3, 0) or "")
    assert sandbox.weakness(4, 0) is None


def test_the_qemu_policy_grants_files_not_their_directories() -> None:
    policy = sandbox.qemu_policy(inputs=["/s/scratch.img"], output="/v/disk.img.part")
    by_path = {r.path: r for r in policy.rules}
    assert by_path["/s/scratch.img"].access == Fs.READ_FILE
    assert by_path["/v/disk.img.part"].access == Fs.READ_FILE | Fs.WRITE_FILE | Fs.TRUNCATE
    assert "/s" not in by_path and "/v" not in by_path
    assert not any(p.startswith(("/proc", "/sys", "/home", "/root", "/tmp")) for p in by_path)
    block = sandbox.qemu_policy(output="/dev/vdb", output_is_block=True)
    assert {r.path: r.access for r in block.rules}["/dev/vdb"] & Fs.IOCTL_DEV


# --- the real thing ---------------------------------------------------------------------


@needs_landlock
def test_qemu_img_reads_its_input_and_nothing_else(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    allowed, secret = files
    policy = sandbox.qemu_policy(inputs=[str(allowed)])
    ok = run(info_argv(qemu.source_filename(str(allowed), "qcow2")), policy)
    assert ok.returncode == 0, stderr(ok)
    assert json.loads(ok.stdout)["format"] == "qcow2"

    watch(secret)
    denied = run(info_argv(raw_file(secret)), policy)
    assert denied.returncode != 0
    assert "Permission denied" in stderr(denied)
    assert secret.stat().st_atime == PAST
    assert qemu.denied_reference(denied.stderr_tail, [str(allowed)])

    control = run(["qemu-img", "convert", "-O", "raw", raw_file(secret), str(tmp_path / "c")],
                  None)
    assert control.returncode == 0, stderr(control)
    assert secret.stat().st_atime != PAST


@needs_landlock
@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "/proc/{importer}/environ", "/proc/self/status", "{home}"],
)
def test_nothing_of_the_system_or_the_importer_is_readable(
    files: tuple[Path, Path], target: str
) -> None:
    # The importer's environment holds its credentials; /proc would hand them out.
    target = target.format(importer=os.getpid(), home=os.path.expanduser("~/.profile"))
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    allowed, _ = files
    outcome = run(info_argv(raw_file(target)), sandbox.qemu_policy(inputs=[str(allowed)]))
    assert outcome.returncode != 0
    assert "Permission denied" in stderr(outcome)


@needs_landlock
def test_a_backing_file_cannot_be_followed_even_when_asked_to(tmp_path: Path) -> None:
    """A plain `-f qcow2 child` argv (no driver tree: qemu follows the backing file)."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"\x5a" * (1 << 20))
    child = tmp_path / "child.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
                    str(child)], check=True)
    out = tmp_path / "out" / "disk.img"
    out.parent.mkdir()
    out.touch()
    watch(base)
    argv = ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(child), str(out)]
    policy = sandbox.qemu_policy(inputs=[str(child)], output=str(out))
    denied = run(argv, policy)
    assert denied.returncode != 0
    assert "Permission denied" in stderr(denied)
    assert qemu.denied_reference(denied.stderr_tail, [str(child), str(out)])
    assert base.stat().st_atime == PAST

    control = run(argv, None)
    assert control.returncode == 0, stderr(control)
    assert base.stat().st_atime != PAST


@needs_landlock
def test_only_the_output_is_writable(files: tuple[Path, Path], tmp_path: Path) -> None:
    allowed, _ = files
    granted = tmp_path / "granted.img"
    granted.touch()
    other = tmp_path / "other.img"
    name = qemu.source_filename(str(allowed), "qcow2")
    policy = sandbox.qemu_policy(inputs=[str(allowed)], output=str(granted))
    ok = run(["qemu-img", "convert", "-O", "raw", name, str(granted)], policy)
    assert ok.returncode == 0, stderr(ok)
    assert granted.stat().st_size > 0
    denied = run(["qemu-img", "convert", "-O", "raw", name, str(other)], policy)
    assert denied.returncode != 0
    assert not other.exists()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s


def accepts(server: socket.socket, timeout: float = 0.5) -> bool:
    """Whether a connection reached `server`. A connection the kernel completed is queued
    until accepted, so looking after the client exited is enough."""
    server.settimeout(timeout)
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


@contextlib.contextmanager
def answering(server: socket.socket) -> Iterator[list[bool]]:
    """Accept (and hang up on) one connection while the body runs, so a client that got
    through fails at once instead of waiting for an NBD greeting."""
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(accepts(server, 10.0)))
    thread.start()
    try:
        yield got
    finally:
        thread.join()


@needs_landlock
def test_no_tcp_connection_is_ever_opened(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    name = drivertree.json_filename({
        "driver": "raw",
        "file": {"driver": "nbd", "server": {"type": "inet", "host": "127.0.0.1",
                                             "port": str(port)}},
    })
    denied = run(info_argv(name), sandbox.qemu_policy())
    assert denied.returncode != 0
    assert "Permission denied" in stderr(denied)
    assert not accepts(listener)

    with answering(listener) as got:
        control = run(info_argv(name), None)
    assert control.returncode != 0  # the listener speaks no NBD, but it was reached
    assert got == [True]


@pytest.mark.skipif(ABI < 6, reason="kernel without Landlock scopes (ABI 6)")
def test_no_abstract_unix_socket_outside_the_sandbox_is_reachable() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        name = f"cdi-sandbox-test-{os.getpid()}"
        server.bind("\0" + name)
        server.listen()
        tree = drivertree.json_filename({
            "driver": "raw",
            "file": {"driver": "nbd",
                     "server": {"type": "unix", "path": name, "abstract": True}},
        })
        denied = run(info_argv(tree), sandbox.qemu_policy())
        assert denied.returncode != 0
        assert not accepts(server)
        with answering(server) as got:
            run(info_argv(tree), None)
        assert got == [True]


@needs_landlock
@pytest.mark.parametrize("abi", range(1, ABI + 1))
def test_every_abi_confines_qemu_img_to_its_files(files: tuple[Path, Path], abi: int) -> None:
    """On an older kernel the same policy still works (rights it lacks are dropped)."""
    allowed, secret = files
    policy = sandbox.qemu_policy(inputs=[str(allowed)])
    ok = run(info_argv(qemu.source_filename(str(allowed), "qcow2")), policy, abi=abi)
    assert ok.returncode == 0, stderr(ok)
    denied = run(info_argv(raw_file(secret)), policy, abi=abi)
    assert "Permission denied" in stderr(denied)


def test_without_landlock_the_child_runs_unconfined(files: tuple[Path, Path]) -> None:
    _, secret = files
    with sandbox.prepare(sandbox.qemu_policy(), abi=0) as confinement:
        assert not confinement.active
        outcome = run_watched(info_argv(raw_file(secret)), limits=INFO_LIMITS,
                              capture_stdout=True, confine=confinement.restrict)
    assert outcome.returncode == 0, stderr(outcome)


def test_a_child_that_cannot_confine_itself_never_runs(files: tuple[Path, Path]) -> None:
    _, secret = files
    broken = sandbox.Confinement(ruleset_fd=1 << 20, abi=max(ABI, 1))  # not an open fd
    outcome = run_watched(info_argv(raw_file(secret)), limits=INFO_LIMITS,
                          capture_stdout=True, confine=broken.restrict)
    assert outcome.returncode == 126
    assert outcome.stdout == b""
    assert "landlock_restrict_self failed" in stderr(outcome)


@needs_landlock
def test_an_optional_rule_for_a_missing_path_is_skipped(files: tuple[Path, Path]) -> None:
    allowed, _ = files
    policy = sandbox.qemu_policy(
        inputs=[str(allowed)], extra=[Rule("/nonexistent/dir", Fs.READ_FILE, optional=True)]
    )
    ok = run(info_argv(qemu.source_filename(str(allowed), "qcow2")), policy)
    assert ok.returncode == 0, stderr(ok)
    with pytest.raises(FileNotFoundError), sandbox.prepare(
        sandbox.Policy((Rule("/nonexistent/dir", Fs.READ_FILE),))
    ):
        pass

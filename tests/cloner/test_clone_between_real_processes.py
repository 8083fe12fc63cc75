"""The real `cdi-cloner` streams to the real `cdi-uploadserver` in clone mode over mutual TLS.

Every combination of Filesystem and Block on both ends, archives, sparse sources (holes
never sent: counted on the wire), a connection cut mid-stream (resumed), a certificate of
another name, a stream whose digest lies, a source larger than the target. Every target is
compared byte for byte with its source.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from cdicontract import clone, sizes
from cdicontract import clonestream as cs
from tests.cloner.conftest import MiB, same_prefix_then_zeros, write_sparse_image
from tests.cloner.peers import Cutter, cloner_tls_dir, run_cloner
from tests.peers import devices

SIZE = 24 * MiB


def _target_dir(tmp_path: Path) -> Path:
    d = tmp_path / "target"
    d.mkdir()
    return d


def _done(server, run) -> dict[str, object]:
    assert run.code == 0, run.output + server.output()
    assert server.wait_exit() == 0, server.output()
    report = server.read_report()
    assert report["reason"] == "Completed" and report["message"] == "Clone Complete"
    assert run.report["reason"] == "Completed"
    return report


def test_filesystem_to_filesystem_sparse_grows_to_usable_size(
    clone_server, tls_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "disk.img"
    data = write_sparse_image(src, SIZE)
    allocated = os.stat(src).st_blocks * 512
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest, UPLOADSERVER_IMAGE_SIZE=str(64 * MiB), FILESYSTEM_OVERHEAD="0.055")
    run = run_cloner(tmp_path, server.url(), tls_dir, src)
    _done(server, run)
    same_prefix_then_zeros(dest, src)
    assert dest.stat().st_size == sizes.usable_size(64 * MiB, 0.055)
    # Holes and zero blocks never went out: the wire carried the data (compressed where
    # it paid) and frame headers only.
    sent = int(run.report["bytes_transferred"])  # type: ignore[arg-type]
    assert sent <= 1.05 * data, (sent, data, allocated)
    assert int(run.report["bytes_written"]) <= data + 64 * 1024 * 64  # type: ignore[arg-type]
    # The target is sparse too: about what the source holds, not its logical size.
    assert dest.stat().st_blocks * 512 <= allocated + MiB
    assert not dest.with_name("disk.img.part").exists()


def test_filesystem_to_block_zeroes_what_the_device_held(
    clone_server, tls_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "disk.img"
    write_sparse_image(src, SIZE)
    backing = devices.fill(tmp_path / "backing", SIZE + 4 * MiB)  # garbage, not zeros
    with devices.loop_device(backing) as dev:
        server = clone_server(dev)
        run = run_cloner(tmp_path, server.url(), tls_dir, src)
        _done(server, run)
        same_prefix_then_zeros(dev, src)


def test_block_to_filesystem(clone_server, tls_dir: Path, tmp_path: Path) -> None:
    img = tmp_path / "source-backing"
    write_sparse_image(img, SIZE, seed=11)
    dest = _target_dir(tmp_path) / "disk.img"
    with devices.loop_device(img) as dev:
        server = clone_server(dest)
        run = run_cloner(tmp_path, server.url(), tls_dir, dev, volume_mode="Block")
        _done(server, run)
    assert dest.read_bytes() == img.read_bytes()


def test_block_to_block(clone_server, tls_dir: Path, tmp_path: Path) -> None:
    img = tmp_path / "source-backing"
    write_sparse_image(img, SIZE, seed=13)
    backing = devices.fill(tmp_path / "target-backing", SIZE + 8 * MiB)
    with devices.loop_device(img) as src, devices.loop_device(backing) as dst:
        server = clone_server(dst)
        run = run_cloner(tmp_path, server.url(), tls_dir, src, volume_mode="Block")
        _done(server, run)
        same_prefix_then_zeros(dst, img)


def test_archive_keeps_files_links_and_modes(clone_server, tls_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src-volume"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n" * 1000)
    (src / "sub" / "random.bin").write_bytes(os.urandom(5 * MiB + 17))
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "sub" / "run.sh").chmod(0o755)
    (src / "sub" / "private").write_text("secret-ish")
    (src / "sub" / "private").chmod(0o600)
    (src / "link").symlink_to("sub/random.bin")
    (src / "lost+found").mkdir()  # a file system's own directory: not user data
    dest = _target_dir(tmp_path)
    server = clone_server(dest, UPLOADSERVER_CONTENT_TYPE="archive")
    run = run_cloner(tmp_path, server.url(), tls_dir, src, content="archive")
    _done(server, run)

    def tree(root: Path) -> dict[str, tuple[int, bytes | str]]:
        out: dict[str, tuple[int, bytes | str]] = {}
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = (stat.S_IMODE(st.st_mode), "dir")
            else:
                out[rel] = (stat.S_IMODE(st.st_mode), p.read_bytes())
        return out

    expected = tree(src)
    del expected["lost+found"]
    assert tree(dest) == expected


def test_a_connection_cut_mid_stream_resumes_where_the_server_stands(
    clone_server, tls_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "disk.img"
    with src.open("wb") as f:  # incompressible: the cut lands mid-stream, not after it
        for _ in range(SIZE // MiB):
            f.write(os.urandom(MiB))
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    cutter = Cutter(server.port, cut_after=SIZE // 2)
    try:
        run = run_cloner(tmp_path, server.url(port=cutter.port), tls_dir, src)
    finally:
        cutter.close()
    report = _done(server, run)
    assert cutter.connections >= 2
    assert int(run.report["resumes"]) >= 1  # type: ignore[arg-type]
    assert int(report["resumes"]) >= 1  # type: ignore[arg-type]
    # Resumed, not restarted: far less than twice the image went out.
    assert int(run.report["bytes_transferred"]) < 1.6 * SIZE  # type: ignore[arg-type]
    assert dest.read_bytes() == src.read_bytes()


def test_a_certificate_of_another_name_is_refused_and_nothing_written(
    clone_server, pki, tmp_path: Path
) -> None:
    src = tmp_path / "disk.img"
    write_sparse_image(src, 4 * MiB)
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    wrong = cloner_tls_dir(tmp_path, pki, pki.wrong_name)
    run = run_cloner(tmp_path, server.url(), wrong, src)
    assert run.code == 1
    assert run.report["reason"] == "Forbidden", run.report
    assert server.proc.poll() is None  # still waiting for its own cloner
    assert list(dest.parent.iterdir()) == []
    # The upload proxy's certificate (the default client name) may not write here either.
    with server.client(pki.wrong_name) as c:
        assert c.head(server.url()).status_code == 403


def test_a_stream_whose_digest_lies_fails_and_leaves_nothing(clone_server, tmp_path: Path) -> None:
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    header = cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, 2 * MiB).encode()
    body = header + cs.encode_data(0, b"x" * MiB) + cs.encode_end(2 * MiB, bytes(32))
    with server.client() as c:
        r = c.post(server.url(), data=body, headers={"Content-Type": cs.MEDIA_TYPE})
    assert r.status_code == 400
    assert r.text.startswith("ChecksumMismatch:"), r.text
    assert server.wait_exit() == 1
    assert server.read_report()["reason"] == "ChecksumMismatch"
    assert list(dest.parent.iterdir()) == []


def test_a_source_larger_than_the_target_is_refused_before_writing(
    clone_server, tls_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "disk.img"
    write_sparse_image(src, SIZE)
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest, UPLOADSERVER_IMAGE_SIZE=str(16 * MiB))
    run = run_cloner(tmp_path, server.url(), tls_dir, src)
    assert run.code == 1
    assert run.report["reason"] == "ImageTooLarge", (run.report, run.output)
    assert "larger than the target can hold" in str(run.report["message"])
    assert server.wait_exit() == 1
    assert server.read_report()["reason"] == "ImageTooLarge"
    assert list(dest.parent.iterdir()) == []


def test_a_source_that_is_not_there_is_reported(tls_dir: Path, tmp_path: Path) -> None:
    run = run_cloner(tmp_path, "https://127.0.0.1:9/v1beta1/clone", tls_dir, tmp_path / "nope")
    assert run.code == 1
    assert run.report["reason"] == "SourceNotFound"


def test_paused_clone_reports_progress_and_its_offset(clone_server, tmp_path: Path) -> None:
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    header = cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, 4 * MiB).encode()
    with server.client() as c:
        r = c.post(
            server.url(),
            data=header + cs.encode_data(0, os.urandom(MiB)),  # no END: the body breaks off
            headers={"Content-Type": cs.MEDIA_TYPE},
        )
        assert r.status_code == 400 and "continues at 1048576" in r.text
        assert c.head(server.url()).headers[cs.RESUME_HEADER] == str(MiB)
        # Not the continuation: refused, nothing changes.
        again = cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, 4 * MiB).encode()
        r = c.post(server.url(), data=again, headers={"Content-Type": cs.MEDIA_TYPE})
        assert r.status_code == 409 and r.headers[cs.RESUME_HEADER] == str(MiB)
    assert server.progress() == 25.0


def test_upload_and_clone_paths_do_not_mix(clone_server, tmp_path: Path) -> None:
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    with server.client() as c:
        assert c.post(server.url("/v1beta1/upload"), data=b"x").status_code == 404
        assert c.post(server.url(), data=b"x").status_code == 415


def test_clone_mode_without_the_cloner_name_does_not_start(tmp_path: Path, pki) -> None:
    env = {
        **os.environ,
        clone.ENV_SERVER_MODE: "clone",
        "UPLOADSERVER_TERMINATION_LOG": str(tmp_path / "r"),
    }
    env.pop("UPLOADSERVER_CLIENT_NAME", None)
    exe = Path(sys.executable).with_name("cdi-uploadserver")
    done = subprocess.run(
        [str(exe), "--port", "0"], check=False, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"UPLOADSERVER_CLIENT_NAME" in done.stderr


def test_a_restarted_cloner_continues_where_the_server_stands(
    clone_server, tls_dir: Path, tmp_path: Path
) -> None:
    """The first cloner died after a few frames (its pod restarted): the next one asks the
    server, rebuilds the digest of what is there from the source, and sends only the rest."""
    from cloner import sources
    from cloner.frames import FrameSource

    src = tmp_path / "disk.img"
    write_sparse_image(src, SIZE, seed=21)
    dest = _target_dir(tmp_path) / "disk.img"
    server = clone_server(dest)
    fd = os.open(src, os.O_RDONLY)
    try:
        size = sources.image_size(fd)
        first = FrameSource(
            cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, size),
            lambda start: sources.image_extents(fd, size, start),
        )
        pieces = first.frames(0)
        head = [next(pieces)] + [next(pieces) for _ in range(8)]  # header + 4 frames
        pieces.close()
    finally:
        os.close(fd)
    with server.client() as c:
        r = c.post(server.url(), data=iter(head), headers={"Content-Type": cs.MEDIA_TYPE})
        assert r.status_code == 400, r.text  # the body broke off: paused
        held = int(c.head(server.url()).headers[cs.RESUME_HEADER])
    assert held > 0
    run = run_cloner(tmp_path, server.url(), tls_dir, src)
    report = _done(server, run)
    assert int(report["resumes"]) == 1  # type: ignore[arg-type]
    assert int(run.report["bytes_written"]) + held <= os.stat(src).st_size  # type: ignore[arg-type]
    same_prefix_then_zeros(dest, src)

#!/usr/bin/env python3
"""Clone data-path benchmark: cdi-cloner -> cdi-uploadserver (clone mode) vs `cp --sparse=always`.

On this host, no cluster: a sparse raw image (default 4 GiB virtual, about a quarter
allocated in extents of 64 KiB .. 8 MiB, half random and half compressible data as a
disk's files are, some allocated zero blocks among them) is built once and cached. Then,
alternating in one run, --repeat times:

  clone  the real `cdi-uploadserver` in clone mode (subprocess, the env the controller
         sets, real mutual TLS from a throwaway CA) and the real `cdi-cloner` against it on
         127.0.0.1: timed from starting the cloner to its exit 0 (the server confirmed:
         digest verified, target fsynced, renamed). Both processes' peak RSS from
         wait4()'s rusage; bytes on the wire from the cloner's termination report.
  cp     `cp --sparse=always` of the same file to the same directory; timed alone and
         with the fsync of the copy (the clone's end includes its fsync; plain cp does not
         sync: both ratios are printed).

The source is read once before the first run so both read it from the page cache. Every
clone target is compared with the source (cmp, outside the clock).

Targets (issue 10): clone time <= 1.3x cp; bytes sent <= 1.05x the allocated data.

Usage: $VENV/bin/python bench/bench_clone_stream.py [--size-gib 4] [--repeat 2] [--dir D]
The cluster benchmark (cross-node through the controller) is tests/'s; it can reuse
`build_image` and `Pki` setup from here (`python -c 'from bench.bench_clone_stream import
build_image'`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from cdicontract import clone  # noqa: E402
from cdicontract import upload as contract  # noqa: E402
from tests.uploadproxy.server.pki import make_pki  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
CACHE = Path(os.environ.get("CDI_PY_BENCH_CACHE", "/var/tmp/cdi-py-bench"))
TARGET_UID = "b3c2a1d0-0000-4000-8000-00000000bench"


def build_image(path: Path, size: int, share: float = 0.25, seed: int = 10) -> None:
    """A sparse raw disk: `share` of it allocated, in extents, half random half compressible."""
    rng = random.Random(seed)
    words = [bytes(rng.getrandbits(8) for _ in range(rng.randint(3, 12))) for _ in range(4096)]
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            extent = rng.choice([64 << 10, 256 << 10, MiB, 4 * MiB, 8 * MiB])
            gap = int(extent * (1 - share) / share)
            pos += rng.randint(0, 2 * gap) // 4096 * 4096
            length = min(extent, size - pos)
            if length <= 0:
                break
            f.seek(pos)
            kind = rng.random()
            if kind < 0.5:
                f.write(os.urandom(length))
            elif kind < 0.95:
                # Text-like: random words from a small vocabulary (compresses ~3x).
                out = bytearray()
                while len(out) < length:
                    out += b" ".join(rng.choices(words, k=512))
                f.write(bytes(out[:length]))
            else:
                f.write(bytes(length))  # allocated zeros (a freed file's blocks)
            pos += length
    tmp.rename(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    seconds: float
    server_rss: int
    cloner_rss: int
    sent: int
    data: int
    cloner_cpu: float
    server_cpu: float


def wait_rss(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, float]:
    """(exit code, peak RSS bytes, CPU seconds) of one child, from wait4()."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            return proc.returncode, usage.ru_maxrss * 1024, cpu
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("timed out")
        time.sleep(0.02)


def clone_once(src: Path, work: Path, pki_dir: Path, n: int) -> Run:
    (pki_dir / f"pki{n}").mkdir()
    pki = make_pki(pki_dir / f"pki{n}", clone.client_name(TARGET_UID))
    tls = pki_dir / f"cloner-tls{n}"
    tls.mkdir()
    shutil.copy(pki.client[0], tls / "tls.crt")
    shutil.copy(pki.client[1], tls / "tls.key")
    shutil.copy(pki.server_ca, tls / "ca.crt")
    dest = work / "clone" / "disk.img"
    dest.parent.mkdir(exist_ok=True)
    port = free_port()
    report = pki_dir / f"server-report{n}"
    env = {
        **os.environ,
        clone.ENV_SERVER_MODE: clone.SERVER_MODE_CLONE,
        contract.ENV_CLIENT_NAME: clone.client_name(TARGET_UID),
        contract.ENV_TLS_DIR: str(pki.tls_dir),
        contract.ENV_DEST: str(dest),
        contract.ENV_TERMINATION_LOG: str(report),
        contract.ENV_OWNER_UID: "bench",
    }
    bindir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bindir / "cdi-uploadserver"), "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "off"],
        env=env, stdout=subprocess.DEVNULL, stderr=(pki_dir / f"server{n}.log").open("wb"),
    )
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    cloner_report = pki_dir / f"cloner-report{n}"
    cenv = {
        **os.environ,
        clone.ENV_UPLOAD_URL: f"https://127.0.0.1:{port}{clone.CLONE_PATH}",
        clone.ENV_CONTENT_TYPE: "kubevirt",
        clone.ENV_VOLUME_MODE: "Filesystem",
        clone.ENV_TLS_DIR: str(tls),
        clone.ENV_TERMINATION_LOG: str(cloner_report),
    }
    began = time.monotonic()
    cloner = subprocess.Popen(
        [str(bindir / "cdi-cloner"), "--source", str(src)], env=cenv,
        stdout=subprocess.DEVNULL, stderr=(pki_dir / f"cloner{n}.log").open("wb"),
    )
    code, cloner_rss, cloner_cpu = wait_rss(cloner, 3600)
    seconds = time.monotonic() - began
    scode, server_rss, server_cpu = wait_rss(server, 120)
    if code != 0 or scode != 0:
        raise SystemExit(f"clone failed: cloner {code} server {scode}; logs in {pki_dir}")
    doc = json.loads(cloner_report.read_text())
    if subprocess.run(["cmp", "-s", str(src), str(dest)], check=False).returncode != 0:
        raise SystemExit("the clone differs from its source")
    dest.unlink()
    return Run(seconds, server_rss, cloner_rss, int(doc["bytes_transferred"]),
               int(doc["bytes_written"]), cloner_cpu, server_cpu)


def cp_once(src: Path, work: Path) -> tuple[float, float, float]:
    dest = work / "cp.img"
    began = time.monotonic()
    proc = subprocess.Popen(["cp", "--sparse=always", str(src), str(dest)])
    code, _, cpu = wait_rss(proc, 3600)
    if code != 0:
        raise SystemExit("cp failed")
    plain = time.monotonic() - began
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    synced = time.monotonic() - began
    dest.unlink()
    return plain, synced, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a tmp dir)")
    a = ap.parse_args()
    size = int(a.size_gib * GiB)
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / f"clone-source-{a.size_gib:g}g.img"
    if not src.exists():
        print(f"building {src} ...", flush=True)
        build_image(src, size)
    allocated = os.stat(src).st_blocks * 512
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # page cache
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench-clone-") as tmp:
        work = Path(tmp)
        clones: list[Run] = []
        cps: list[tuple[float, float, float]] = []
        for i in range(a.repeat):
            os.sync()
            cps.append(cp_once(src, work))
            os.sync()
            clones.append(clone_once(src, work, work, i))
            c = clones[-1]
            print(f"run {i}: cp {cps[-1][0]:.2f}s (+fsync {cps[-1][1]:.2f}s, cpu {cps[-1][2]:.2f}s) "
                  f"clone {c.seconds:.2f}s (cpu cloner {c.cloner_cpu:.2f}s server "
                  f"{c.server_cpu:.2f}s) load {os.getloadavg()[0]:.1f}", flush=True)
    best = min(clones, key=lambda r: r.seconds)
    cp_plain = min(c[0] for c in cps)
    cp_synced = min(c[1] for c in cps)
    print()
    print(f"image           {size / GiB:g} GiB virtual, {allocated / MiB:.0f} MiB allocated")
    print(f"cp --sparse     {cp_plain:.2f} s   (with fsync {cp_synced:.2f} s)")
    print(f"clone           {best.seconds:.2f} s   ratio {best.seconds / cp_plain:.2f}x cp, "
          f"{best.seconds / cp_synced:.2f}x cp+fsync   (target <= 1.3x)")
    print(f"bytes sent      {best.sent / MiB:.0f} MiB = {best.sent / allocated:.3f}x allocated "
          f"(data extents {best.data / MiB:.0f} MiB before compression; target <= 1.05x)")
    print(f"CPU seconds     cloner {best.cloner_cpu:.2f}, server {best.server_cpu:.2f}, "
          f"cp {min(c[2] for c in cps):.2f}   (load average now {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs: wall times are only comparable on an idle machine)")
    print(f"peak RSS        cloner {max(r.cloner_rss for r in clones) / MiB:.0f} MiB, "
          f"upload server {max(r.server_rss for r in clones) / MiB:.0f} MiB")


if __name__ == "__main__":
    main()

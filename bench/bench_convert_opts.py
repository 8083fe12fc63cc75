"""Measure qemu-img/nbdkit option choices for converting a qcow2 served over HTTP.

Starts its own nginx on 127.0.0.1 (free port), builds a qcow2 (random data, so nothing
compresses or dedups), and times, best of N runs:
  - reference: `nbdkit -r -U - curl url=... --run 'qemu-img convert -f qcow2 -O raw $nbd out'`
  - scratch:   download with curl to a file, then `qemu-img convert` from it
  - ours:      importer.nbd.NbdServer + importer.qemu.convert (the shipped choices)
  - variants of qemu-img (-W, -m, -t) and nbdkit (--threads, readahead/cache filters).

Usage: python3 bench/bench_convert_opts.py [--data-mib 1024] [--virtual-mib 2048] [--runs 3]
Nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from importer import qemu
from importer.nbd import NbdServer
from importer.sources.base import RandomAccess

NGINX_CONF = """
daemon off; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {d}/t; proxy_temp_path {d}/t; fastcgi_temp_path {d}/t;
  uwsgi_temp_path {d}/t; scgi_temp_path {d}/t;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(work: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (work / "t").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=work, port=port, root=root))
    proc = subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(work)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def make_image(root: Path, data_mib: int, virtual_mib: int) -> Path:
    raw = root / "src.raw"
    with open(raw, "wb") as f:
        for _ in range(data_mib):
            f.write(os.urandom(1 << 20))
        f.truncate(virtual_mib << 20)
    img = root / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(img)],
                   check=True)
    raw.unlink()
    img.chmod(0o644)
    return img


def measure(variants: list[tuple[str, Callable[[], None]]], rounds: int, out: Path) -> None:
    """Round-robin the variants (so drifting disk/cache noise hits all alike); report the best
    time of each, both until the command returns and until its data is durable (+ sync),
    since qemu-img with a writeback cache returns before its data reaches the disk."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, fn in variants:
            if out.exists():
                out.unlink()
            os.sync()
            t = time.monotonic()
            fn()
            done = time.monotonic() - t
            os.sync()
            durable = time.monotonic() - t
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], done), min(old[1], durable))
    ref = best[variants[0][0]]
    print(f"{'variant':60s} {'returns':>8s} {'durable':>8s}  (best of {rounds}; ratio to first)")
    for name, _ in variants:
        d, u = best[name]
        print(f"{name:60s} {d:7.2f}s {u:7.2f}s  {d / ref[0]:.2f} {u / ref[1]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-mib", type=int, default=1024)
    ap.add_argument("--virtual-mib", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the target is written (default: a tmp dir)")
    ap.add_argument("--quick", action="store_true", help="only reference, scratch and ours")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    outdir = Path(args.dir) if args.dir else work
    root = work / "www"
    root.mkdir()
    # nginx workers run as nobody: they must be able to reach and read the image.
    work.chmod(0o755)
    nginx, base = start_nginx(work, root)
    try:
        make_image(root, args.data_mib, args.virtual_mib)
        url = f"{base}/disk.qcow2"
        out = outdir / "out.raw"
        variants: list[tuple[str, Callable[[], None]]] = []

        def run(name: str, fn: Callable[[], None]) -> None:
            variants.append((name, fn))

        def nbd_run(qopts: str, nopts: str = "", filters: str = "") -> Callable[[], None]:
            cmd = (f"nbdkit -r -U - {nopts} {filters} curl url={url} "
                   f"--run 'qemu-img convert {qopts} -f qcow2 -O raw $nbd {out}'")
            return lambda: subprocess.run(cmd, shell=True, check=True)

        def arena_run(qopts: str) -> Callable[[], None]:
            cmd = (f"MALLOC_ARENA_MAX=2 nbdkit -r -U - curl url={url} "
                   f"--run 'qemu-img convert {qopts} -f qcow2 -O raw $nbd {out}'")
            return lambda: subprocess.run(cmd, shell=True, check=True)

        def scratch() -> None:
            s = work / "scratch.qcow2"
            subprocess.run(["curl", "-sf", "-o", str(s), url], check=True)
            subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(s), str(out)],
                           check=True)
            s.unlink()

        def ours(filters: tuple[str, ...] = ()) -> Callable[[], None]:
            def fn() -> None:
                access = RandomAccess("curl", (f"url={url}",), filters=filters)
                with NbdServer(access, workdir=str(work)) as nbd:
                    qemu.convert(nbd.uri, "qcow2", str(out), dest_is_block=False)
            return fn

        run("reference: nbdkit curl --run qemu-img convert", nbd_run(""))
        run("scratch: curl download + qemu-img convert", scratch)
        run("ours: NbdServer + qemu.convert", ours())
        run("nbdkit curl, qemu-img -W -m 16 -t none", nbd_run("-W -m 16 -t none"))
        run("nbdkit curl, same + MALLOC_ARENA_MAX=2", arena_run("-W -m 16 -t none"))
        if not args.quick:
            for q in ("-W", "-m 16", "-W -m 16", "-t none", "-m 16 -t none",
                      "-W -t none", "-W -m 16 -t none"):
                run(f"nbdkit curl, qemu-img {q}", nbd_run(q))
            for n, f in (("--threads 4", ""), ("", "--filter=cache")):
                run(f"nbdkit {n} {f}, qemu-img -t none", nbd_run("-t none", n, f))

            def prezero() -> None:
                with open(out, "wb") as f:
                    f.truncate(args.virtual_mib << 20)
                subprocess.run(f"nbdkit -r -U - curl url={url} --run 'qemu-img convert "
                               f"-t none -n --target-is-zero -f qcow2 -O raw $nbd {out}'",
                               shell=True, check=True)
            run("pre-truncated + -n --target-is-zero -t none", prezero)
        measure(variants, args.runs, out)
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

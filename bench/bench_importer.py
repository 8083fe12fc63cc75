#!/usr/bin/env python3
"""Importer benchmark: ours side by side with the baselines, in one process tree.

Builds (once, cached under ~/.cache/cdi-py/bench/) a realistic disk: an ext4 filesystem of
a few GiB filled with real files from this machine (about a quarter allocated), as qcow2,
raw.gz and raw.xz. Serves them with nginx on loopback and times:

  qcow2: ours vs `nbdkit -r -U - curl url=... --run 'qemu-img convert -f qcow2 -O raw $nbd out'`
         (CDI's former streaming path; target <= 1.1x)
         ours vs curl download to scratch, then qemu-img convert (CDI's current path; <= 0.7x)
  raw.gz: ours vs `curl | gzip -dc > out` (target <= 0.5x, and our output sparse)
  raw.xz: ours vs `curl | xz -dc > out` (target <= 0.9x)
  and the peak RSS of the importer's process tree (target <= 128 MiB).

Every output is synced before its clock stops (the importer fsyncs; the baselines get a
`sync -f` of their output), and the output is checked against the reference.

Usage: python3 bench/bench_importer.py [--size-gib 4] [--cases qcow2,gz,xz] [--repeat 1]
(with --repeat N it also prints the medians, which are the figures to quote)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdi-py" / "bench"
DATA_DIRS = ["/usr/share", "/usr/local/go", "/usr/lib/python3", "/usr/lib/x86_64-linux-gnu/perl"]


def sh(cmd: str, **kw: object) -> None:
    subprocess.run(cmd, shell=True, check=True, **kw)  # type: ignore[call-overload]


def build_images(size_gib: int, fill_gib: float) -> dict[str, Path]:
    d = CACHE / f"ext4-{size_gib}g"
    d.mkdir(parents=True, exist_ok=True)
    ref = d / "disk.raw"
    if not ref.exists():
        stage = Path(tempfile.mkdtemp(prefix="bench-stage-", dir=d))
        budget = int(fill_gib * (1 << 30))
        used = 0
        print(f"building {size_gib} GiB ext4 with ~{fill_gib} GiB of real files ...", flush=True)
        for src in DATA_DIRS:
            if used >= budget or not os.path.isdir(src):
                continue
            for root, _dirs, files in os.walk(src):
                for f in files:
                    p = os.path.join(root, f)
                    if not os.path.isfile(p) or os.path.islink(p):
                        continue
                    size = os.path.getsize(p)
                    if used + size > budget:
                        continue
                    dst = stage / os.path.relpath(p, "/")
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        shutil.copyfile(p, dst)
                    except OSError:
                        continue
                    used += size
        tmp = ref.with_suffix(".tmp")
        sh(f"truncate -s {size_gib}G {tmp} && mkfs.ext4 -q -F -d {stage} {tmp}")
        tmp.rename(ref)
        shutil.rmtree(stage)
    out = {"raw": ref}
    for name, cmd in {
        "qcow2": f"qemu-img convert -f raw -O qcow2 {ref} {{out}}",
        "raw.gz": f"pigz -6 -c {ref} > {{out}}",
        "raw.xz": f"xz -T2 -2 -c {ref} > {{out}}",
    }.items():
        p = d / f"disk.{name}"
        if not p.exists():
            print(f"making {p.name} ...", flush=True)
            tmp = f"{p}.tmp.{os.getpid()}"  # concurrent runs never share a half-made file
            sh(cmd.format(out=tmp))
            os.rename(tmp, p)
        out[name] = p
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(root: Path, work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {work}/nginx.pid; error_log {work}/error.log; worker_processes 2; user root;\n"
        "events {}\n"
        f"http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    proc = subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(work)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"http://127.0.0.1:{port}", proc


class TreeRss:
    """Samples the summed RSS of a process and its descendants; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.peak_main = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_main = max(self.peak_main, self._rss(self.pid))
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree()))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


@dataclass
class Timing:
    seconds: float
    rss_tree: int = 0
    rss_main: int = 0


def timed(cmd: list[str] | str, out: Path, *, sync: bool, shell: bool = False) -> Timing:
    if out.exists():
        out.unlink()
    sh("sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, shell=shell)
    rss = TreeRss(proc.pid)
    rc = proc.wait()
    rss.stop()
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {cmd}")
    if sync:
        sh(f"sync -f {out}")
    return Timing(time.monotonic() - t0, rss.peak, rss.peak_main)


def check_same(ref: Path, out: Path) -> None:
    r = subprocess.run(["cmp", "-s", str(ref), str(out)], check=False)
    if r.returncode != 0:
        raise SystemExit(f"output {out} differs from the reference")


def allocated(p: Path) -> str:
    st = p.stat()
    return f"{st.st_blocks * 512 / 2**30:.2f} GiB allocated of {st.st_size / 2**30:.2f} GiB"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--fill-gib", type=float, default=1.0)
    ap.add_argument("--cases", default="qcow2,gz,xz")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--workdir", default=None, help="where outputs go (default: a temp dir in the cache)"
    )
    ap.add_argument("--prepare-only", action="store_true", help="build the cached images, stop")
    args = ap.parse_args()

    imgs = build_images(args.size_gib, args.fill_gib)
    if args.prepare_only:
        return 0
    ref = imgs["raw"]
    work = Path(tempfile.mkdtemp(prefix="bench-run-", dir=args.workdir or CACHE))
    www = work / "www"
    www.mkdir()
    for k in ("qcow2", "raw.gz", "raw.xz"):
        os.link(imgs[k], www / imgs[k].name)
    url, nginx = start_nginx(www, work)
    importer = [sys.executable, "-m", "importer.cli", "--no-progress"]
    rows: list[tuple[str, float, float, float, str]] = []
    peak_tree = peak_main = 0
    try:
        cases = args.cases.split(",")
        for _ in range(args.repeat):
            if "qcow2" in cases:
                out = work / "out.img"
                ours = timed(
                    [*importer, "--endpoint", f"{url}/disk.qcow2", "--dest", str(out)],
                    out,
                    sync=False,
                )
                check_same(ref, out)
                peak_tree, peak_main = max(peak_tree, ours.rss_tree), max(peak_main, ours.rss_main)
                nbd = timed(
                    f"nbdkit -r -U - curl url={url}/disk.qcow2 "
                    f"--run 'qemu-img convert -f qcow2 -O raw $nbd {out}'",
                    out,
                    sync=True,
                    shell=True,
                )
                check_same(ref, out)
                scratch = work / "scratch.qcow2"
                # CDI writes scratch and converts from it without syncing it first; the
                # scratch copy usually stays in the page cache.
                cdi = timed(
                    f"curl -sf -o {scratch} {url}/disk.qcow2 && "
                    f"qemu-img convert -f qcow2 -O raw {scratch} {out}",
                    out,
                    sync=True,
                    shell=True,
                )
                scratch.unlink()
                check_same(ref, out)
                rows.append(("qcow2 vs nbdkit+qemu-img", ours.seconds, nbd.seconds, 1.1, ""))
                rows.append(("qcow2 vs scratch+convert", ours.seconds, cdi.seconds, 0.7, ""))
            for case, tool, target in (("gz", "gzip", 0.5), ("xz", "xz", 0.9)):
                if case not in cases:
                    continue
                out = work / "out.img"
                ours = timed(
                    [*importer, "--endpoint", f"{url}/disk.raw.{case}", "--dest", str(out)],
                    out,
                    sync=False,
                )
                check_same(ref, out)
                sparse = allocated(out)
                peak_tree, peak_main = max(peak_tree, ours.rss_tree), max(peak_main, ours.rss_main)
                base = timed(
                    f"curl -sf {url}/disk.raw.{case} | {tool} -dc > {out}",
                    out,
                    sync=True,
                    shell=True,
                )
                check_same(ref, out)
                rows.append(
                    (
                        f"raw.{case} vs curl|{tool} -dc",
                        ours.seconds,
                        base.seconds,
                        target,
                        f"ours: {sparse}; baseline: {allocated(out)}",
                    )
                )
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nimage: {args.size_gib} GiB ext4, {ref.stat().st_blocks * 512 / 2**30:.2f} GiB allocated"
    )
    print(f"{'case':34} {'ours s':>8} {'base s':>8} {'ratio':>6} {'target':>7}  ok")
    for name, ours_s, base_s, target, note in rows:
        ratio = ours_s / base_s
        print(
            f"{name:34} {ours_s:8.2f} {base_s:8.2f} {ratio:6.2f} {'<=' + str(target):>7}  {'yes' if ratio <= target else 'NO'}  {note}"
        )
    if args.repeat > 1:
        # Disk writeback makes single runs swing by a third; the medians are the figures.
        print(f"\nmedians over {args.repeat} runs")
        for name in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == name]
            ours_m = statistics.median(r[1] for r in mine)
            base_m = statistics.median(r[2] for r in mine)
            target = mine[0][3]
            ratio = ours_m / base_m
            print(
                f"{name:34} {ours_m:8.2f} {base_m:8.2f} {ratio:6.2f} {'<=' + str(target):>7}  "
                f"{'yes' if ratio <= target else 'NO'}"
            )
    print(
        f"importer peak RSS: {peak_main / 2**20:.0f} MiB (python process), "
        f"{peak_tree / 2**20:.0f} MiB (whole tree incl. qemu-img/nbdkit); target <= 128 MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

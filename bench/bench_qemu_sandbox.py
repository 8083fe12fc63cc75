"""What the Landlock sandbox costs qemu-img: `info` and a ~1 GiB qcow2 convert, with and
without it.

Builds a qcow2 from a raw file full of random data (nothing compresses, every cluster
allocated), then times, alternating the two variants so machine noise hits both alike:
  - `qemu-img info` (importer.qemu.info_command, INFO_LIMITS), `--info-runs` times each;
  - `qemu-img convert` to a new raw file (importer.qemu.convert_command with the shipped
    options), `--convert-runs` times each;
each through importer.watchdog.run_watched, as importer.qemu runs them. "sandboxed"
includes building the ruleset (importer.sandbox.prepare) and the empty target file.
Prints medians (and min/max) of the wall time and of qemu-img's CPU time (user+sys,
from RUSAGE_CHILDREN: less sensitive to other load on a shared machine), and the ratios
sandboxed/plain.

Usage: python3 bench/bench_qemu_sandbox.py [--data-mib 1024] [--info-runs 40]
       [--convert-runs 7] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from importer import qemu, sandbox
from importer.limits import CONVERT_LIMITS, INFO_LIMITS
from importer.watchdog import run_watched


def make_image(work: Path, data_mib: int) -> Path:
    raw = work / "src.raw"
    with open(raw, "wb") as f:
        for _ in range(data_mib):
            f.write(os.urandom(1 << 20))
    img = work / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(img)],
                   check=True)
    raw.unlink()
    return img


def timed(fn: Callable[[], None]) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_with_cpu(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children that ended meanwhile)."""
    cpu = children_cpu()
    wall = timed(fn)
    return wall, children_cpu() - cpu


def info_variants(img: Path) -> dict[str, Callable[[], None]]:
    argv = qemu.info_command(str(img), "qcow2")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "MALLOC_ARENA_MAX": "2"}

    def plain() -> None:
        assert run_watched(argv, limits=INFO_LIMITS, capture_stdout=True, env=env).returncode == 0

    def sandboxed() -> None:
        with sandbox.prepare(sandbox.qemu_policy(inputs=[str(img)])) as c:
            outcome = run_watched(argv, limits=INFO_LIMITS, capture_stdout=True, env=env,
                                  confine=c.restrict)
        assert outcome.returncode == 0, outcome.stderr_tail

    return {"plain": plain, "sandboxed": sandboxed}


def convert_variants(img: Path, out: Path) -> dict[str, Callable[[], None]]:
    direct = qemu.direct_io_supported(str(out), dest_is_block=False)
    argv = qemu.convert_command(str(img), "qcow2", str(out), create=True, target_is_zero=False,
                                direct=direct)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "MALLOC_ARENA_MAX": "2"}

    def plain() -> None:
        outcome = run_watched(argv, limits=CONVERT_LIMITS, env=env)
        assert outcome.returncode == 0, outcome.stderr_tail

    def sandboxed() -> None:
        out.touch()
        policy = sandbox.qemu_policy(inputs=[str(img)], output=str(out))
        with sandbox.prepare(policy) as c:
            outcome = run_watched(argv, limits=CONVERT_LIMITS, env=env, confine=c.restrict)
        assert outcome.returncode == 0, outcome.stderr_tail

    return {"plain": plain, "sandboxed": sandboxed}


def measure(name: str, variants: dict[str, Callable[[], None]], runs: int,
            before: Callable[[], None] | None = None) -> None:
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(runs):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for v in order:
            if before is not None:
                before()
            w, c = timed_with_cpu(variants[v])
            wall[v].append(w)
            cpu[v].append(c)
    for label, times in (("wall", wall), ("cpu", cpu)):
        med = {v: statistics.median(t) for v, t in times.items()}
        for v, t in times.items():
            print(f"{name:8s} {label:4s} {v:10s} median {med[v] * 1000:9.1f} ms "
                  f"(min {min(t) * 1000:.1f}, max {max(t) * 1000:.1f}, n={len(t)})")
        print(f"{name:8s} {label:4s} ratio sandboxed/plain {med['sandboxed'] / med['plain']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-mib", type=int, default=1024)
    ap.add_argument("--info-runs", type=int, default=40)
    ap.add_argument("--convert-runs", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where the image and target go (a tmp dir)")
    args = ap.parse_args()
    abi = sandbox.kernel_abi()
    print(f"kernel {os.uname().release}, Landlock ABI {abi}")
    if abi < 1:
        print("no Landlock here: both variants would be the same")
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-sandbox-", dir=args.dir))
    try:
        img = make_image(work, args.data_mib)
        print(f"image {img.stat().st_size >> 20} MiB qcow2 of {args.data_mib} MiB random data")
        policy = sandbox.qemu_policy(inputs=[str(img)])

        def build() -> None:
            with sandbox.prepare(policy):
                pass

        t = statistics.median(timed(build) for _ in range(200))
        print(f"ruleset build (sandbox.prepare) median {t * 1e6:.0f} us")
        measure("info", info_variants(img), args.info_runs)
        out = work / "out.raw"

        def fresh() -> None:
            out.unlink(missing_ok=True)
            os.sync()

        measure("convert", convert_variants(img, out), args.convert_runs, before=fresh)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""What pinning and verifying cost: this tree's importer against an earlier one, side by side.

The integrity work (one pinned, verified view of every ranged source; whole-object
checksums and registry digests verified before commit; table checks; qemu-img's driver
tree) must not cost more than 5%. This runs the importer of a baseline git ref (default:
the last commit before that work) and the importer of this working tree on the same
inputs, alternately, in one process tree, with checksums on:

  qcow2 over HTTP (nginx)            --checksum sha256 of the qcow2
  raw.gz over HTTP (nginx)           --checksum sha256 of the raw.gz
  registry, uncompressed layer       (ranged path; the layer digest is the check)
  registry, gzip layer               (streamed to scratch; the layer digest is the check)

The inputs are bench_importer.py's cached disk (ext4 with real files). Each output is
checked against the reference. Prints per-run times, medians, the ratio (this tree /
baseline) and peak RSS (importer process / whole tree).

Usage: python3 bench/bench_integrity.py [--baseline REF] [--repeat 3] [--size-gib 4]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_importer import (  # noqa: E402
    CACHE,
    build_images,
    check_same,
    start_nginx,
    timed,
)
from tests.peers.registry import OciLayout, Registry, _run_registry, disk_entries  # noqa: E402

DEFAULT_BASELINE = "82cb8e8"  # main before the integrity issue (one verified view)


def sha256_cached(path: Path) -> str:
    stamp = path.with_name(path.name + ".sha256")
    if stamp.exists() and stamp.stat().st_mtime >= path.stat().st_mtime:
        return stamp.read_text().strip()
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    stamp.write_text(h.hexdigest())
    return h.hexdigest()


def importer(tree: Path) -> list[str]:
    """The importer of `tree`, run from `tree` so that `-m importer.cli` imports its code."""
    return ["env", f"PYTHONPATH={tree}", "bash", "-c", 'cd "$0" && exec "$@"', str(tree),
            sys.executable, "-m", "importer.cli", "--no-progress"]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref of the baseline")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--fill-gib", type=float, default=1.0)
    ap.add_argument("--cases", default="qcow2,gz,registry-none,registry-gzip")
    args = ap.parse_args()

    imgs = build_images(args.size_gib, args.fill_gib)
    ref = imgs["raw"]
    work = Path(tempfile.mkdtemp(prefix="bench-integrity-", dir=CACHE))
    base_tree = work / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree),
         args.baseline], check=True,
    )  # fmt: skip
    trees = {"baseline": base_tree, "this tree": ROOT}
    out = work / "out.img"
    results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    cases = args.cases.split(",")
    try:
        with contextlib.ExitStack() as stack:
            www = work / "www"
            www.mkdir()
            for k in ("qcow2", "raw.gz"):
                os.link(imgs[k], www / imgs[k].name)
            url, nginx = start_nginx(www, work)
            stack.callback(nginx.wait)
            stack.callback(nginx.terminate)
            commands: dict[str, list[str]] = {}
            if "qcow2" in cases:
                commands["qcow2 over HTTP, sha256"] = [
                    "--endpoint", f"{url}/disk.qcow2",
                    "--checksum", f"sha256:{sha256_cached(imgs['qcow2'])}",
                ]  # fmt: skip
            if "gz" in cases:
                commands["raw.gz over HTTP, sha256"] = [
                    "--endpoint", f"{url}/disk.raw.gz",
                    "--checksum", f"sha256:{sha256_cached(imgs['raw.gz'])}",
                ]  # fmt: skip
            layers = [c.removeprefix("registry-") for c in cases if c.startswith("registry-")]
            if layers:
                reg_dir = work / "registry"
                reg_dir.mkdir()
                port, storage = stack.enter_context(_run_registry(reg_dir))
                registry = Registry(host=f"127.0.0.1:{port}", storage=storage)
                os.environ["IMPORTER_INSECURE_REGISTRIES"] = registry.host
                for layer in layers:
                    layout = OciLayout(work / f"layout-{layer}")
                    entries = [disk_entries(imgs["qcow2"], "disk.qcow2")]
                    layout.tag(layout.image(entries, compression=layer), "v1")
                    image = registry.push(layout, "v1", f"bench/integrity-{layer}")
                    shutil.rmtree(layout.root)
                    commands[f"registry, {layer} layer, digest"] = [
                        "--source", "registry", "--endpoint", image,
                    ]  # fmt: skip
            for run in range(args.repeat):
                for name, extra in commands.items():
                    order = list(trees.items())
                    if run % 2:
                        order.reverse()  # neither side always runs on a warmer cache
                    for label, tree in order:
                        t = timed([*importer(tree), *extra, "--dest", str(out)], out, sync=False)
                        check_same(ref, out)
                        results.setdefault((name, label), []).append(
                            (t.seconds, t.rss_main, t.rss_tree)
                        )
                        print(f"  {name:34} {label:10} {t.seconds:7.2f} s", flush=True)
    finally:
        os.environ.pop("IMPORTER_INSECURE_REGISTRIES", None)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nbaseline: {args.baseline}; medians of {args.repeat}; checksums/digests on")
    print(f"{'case':34} {'baseline s':>10} {'this s':>8} {'ratio':>6}  peak RSS importer/tree")
    names = dict.fromkeys(name for name, _ in results)
    for name in names:
        base = statistics.median(s for s, _, _ in results[(name, "baseline")])
        ours = statistics.median(s for s, _, _ in results[(name, "this tree")])
        rss_main = max(m for _, m, _ in results[(name, "this tree")]) / 2**20
        rss_tree = max(t for _, _, t in results[(name, "this tree")]) / 2**20
        print(
            f"{name:34} {base:10.2f} {ours:8.2f} {ours / base:6.2f}  "
            f"{rss_main:.0f} / {rss_tree:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

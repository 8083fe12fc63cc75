#!/usr/bin/env python3
"""S3 and registry benchmark: ours side by side with the fastest plain baselines.

Uses the qcow2 of the importer benchmark (bench_importer.py builds and caches it).

  S3 (moto in server mode on loopback):
    ours:     cdi-importer --source s3 (qemu-img reads the object through nbdkit, no copy)
    baseline: boto3 download_file (what `aws s3 cp` does) + qemu-img convert
  registry (Debian's docker-registry on loopback, the qcow2 under /disk/ of an image):
    ours:     cdi-importer --source registry, gzip layer (streamed to scratch: the layer is
              compressed) and uncompressed layer (converted through nbdkit, no copy)
    baseline: skopeo copy to a dir + extract the layer's disk + qemu-img convert

Every output is checked against the reference raw disk and synced before its clock stops;
a baseline's intermediate copy (download, extracted disk) is not synced, as CDI does not
sync its scratch copy either (the same rule as bench_importer.py).
Usage: python3 bench/bench_sources.py [--size-gib 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_importer import CACHE, build_images, check_same, timed
from tests.peers.registry import OciLayout, Registry, _run_registry, disk_entries
from tests.peers.s3 import _moto


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--fill-gib", type=float, default=1.0)
    args = ap.parse_args()
    imgs = build_images(args.size_gib, args.fill_gib)
    ref, qcow2 = imgs["raw"], imgs["qcow2"]
    work = Path(tempfile.mkdtemp(prefix="bench-src-", dir=CACHE))
    out = work / "out.img"
    importer = [sys.executable, "-m", "importer.cli", "--no-progress"]
    rows: list[tuple[str, float, float, int, int]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    try:
        with contextlib.ExitStack() as stack:
            endpoint, _ = stack.enter_context(_moto(work))
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
            s3.create_bucket(Bucket="images")
            s3.upload_file(str(qcow2), "images", "disk.qcow2")
            os.environ.update(
                {"IMPORTER_ACCESS_KEY_ID": "testing", "IMPORTER_SECRET_KEY": "testing"}
            )
            ours = timed(
                [
                    *importer,
                    "--source",
                    "s3",
                    "--endpoint",
                    f"{endpoint}/images/disk.qcow2",
                    "--dest",
                    str(out),
                ],
                out,
                sync=False,
            )
            check_same(ref, out)
            scratch = work / "scratch.qcow2"
            base = timed(
                f"{sys.executable} -c \"import boto3; boto3.client('s3', endpoint_url='{endpoint}', "
                f"aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')"
                f".download_file('images', 'disk.qcow2', '{scratch}')\" && "
                f"qemu-img convert -f qcow2 -O raw {scratch} {out}",
                out,
                sync=True,
                shell=True,
            )
            scratch.unlink()
            check_same(ref, out)
            rows.append(
                (
                    "s3 qcow2 vs boto3 download+convert",
                    ours.seconds,
                    base.seconds,
                    ours.rss_main,
                    ours.rss_tree,
                )
            )

            reg_dir = work / "registry"
            reg_dir.mkdir()
            port, _storage = stack.enter_context(_run_registry(reg_dir))
            registry = Registry(host=f"127.0.0.1:{port}", storage=_storage)
            os.environ["IMPORTER_INSECURE_REGISTRIES"] = registry.host  # plain HTTP on loopback
            for layer in ("gzip", "none"):
                layout = OciLayout(work / f"layout-{layer}")
                layout.tag(
                    layout.image([disk_entries(qcow2, "disk.qcow2")], compression=layer), "v1"
                )
                url = registry.push(layout, "v1", f"bench/disk-{layer}")
                shutil.rmtree(layout.root)
                ours = timed(
                    [*importer, "--source", "registry", "--endpoint", url, "--dest", str(out)],
                    out,
                    sync=False,
                )
                check_same(ref, out)
                pulled = work / "pulled"
                base_cmd = (
                    f"skopeo copy --quiet --src-tls-verify=false {url} dir:{pulled} && "
                    f"{sys.executable} {__file__} --extract {pulled} {work / 'disk.qcow2'} && "
                    f"qemu-img convert -f qcow2 -O raw {work / 'disk.qcow2'} {out}"
                )
                base = timed(base_cmd, out, sync=True, shell=True)
                shutil.rmtree(pulled, ignore_errors=True)
                (work / "disk.qcow2").unlink()
                check_same(ref, out)
                rows.append(
                    (
                        f"registry ({layer} layer) vs skopeo+extract+convert",
                        ours.seconds,
                        base.seconds,
                        ours.rss_main,
                        ours.rss_tree,
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for k in ("IMPORTER_ACCESS_KEY_ID", "IMPORTER_SECRET_KEY", "IMPORTER_INSECURE_REGISTRIES"):
            os.environ.pop(k, None)
        del env

    print(
        f"\nimage: qcow2 of a {args.size_gib} GiB ext4 disk, {qcow2.stat().st_size / 2**30:.2f} GiB"
    )
    print(f"{'case':52} {'ours s':>8} {'base s':>8} {'ratio':>6}  peak RSS: importer / whole tree")
    for name, o, b, rss_main, rss_tree in rows:
        print(
            f"{name:52} {o:8.2f} {b:8.2f} {o / b:6.2f}  {rss_main / 2**20:.0f} / {rss_tree / 2**20:.0f} MiB"
        )
    return 0


def extract(pulled: Path, dest: Path) -> None:
    """The baseline's extract step: find the layer in skopeo's dir: output, write /disk/*."""
    manifest = json.loads((pulled / "manifest.json").read_text())
    for layer in manifest["layers"]:
        blob = pulled / layer["digest"].split(":")[1]
        with tarfile.open(blob, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./").startswith("disk/"):
                    src = tar.extractfile(member)
                    assert src is not None
                    with open(dest, "wb") as f:
                        shutil.copyfileobj(src, f, 1 << 20)
                    return
    raise SystemExit("no disk in the image")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--extract":
        extract(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())

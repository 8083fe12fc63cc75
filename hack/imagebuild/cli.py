"""`hack/build-images [--push ADDRESS] [--only NAME...] [--refresh-base]`.

Builds the images that are missing or stale (their inputs changed), into buildah's local
storage under their release names; with --push, copies each to ADDRESS/<host>/<path>:<tag>
(the layout of the local cluster's registry mirror). Prints one line per image: name, what
happened, id or pushed digest, uncompressed size, compressed size as pushed.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagebuild import base, buildah, inputs, spec

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    name: str
    action: str
    digest: str
    size: int
    compressed: int | None


def cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cdi-py" / "images"


def project_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def revision(root: Path) -> str:
    """The commit the images are built from (labels only: not part of any cache key)."""
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def ca_bundle() -> Iterator[Path]:
    """The CA bundle pip inside the build trusts, passed as a build secret (never a layer):
    the one this machine's pip uses when it has one (a TLS-inspecting proxy's), else an
    empty file, and pip keeps its own."""
    for variable in ("CDI_PY_BUILD_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            yield Path(value)
            return
    with tempfile.NamedTemporaryFile(prefix="cdi-py-no-ca-") as empty:
        yield Path(empty.name)


@contextmanager
def exclusive(cache: Path) -> Iterator[None]:
    """One build at a time per machine: buildah's storage and the base tar are shared."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base(cache: Path, refresh: bool) -> str:
    """The base image in storage, made or re-imported when its label's key is not current."""
    key = base.base_key()
    found = buildah.inspect(spec.BASE_IMAGE)
    if found is not None and buildah.labels(found).get(spec.KEY_LABEL) == key and not refresh:
        return key
    tar = base.ensure_tar(cache, key, refresh)
    print(f"build-images: importing {tar.name} as {spec.BASE_IMAGE}", file=sys.stderr)
    buildah.import_rootfs(tar, spec.BASE_IMAGE, base.CONFIG, f"{spec.KEY_LABEL}={key}")
    return key


def build_one(image: spec.ImageSpec, base_key: str, version: str, rev: str,
              bundle: Path) -> str:
    """Builds IMAGE unless storage holds it with the current key; says which it did."""
    key = inputs.key(
        ROOT, image.inputs,
        extra=[f"base={base_key}", f"dockerfile={image.dockerfile}",
               f"target={image.target}", f"version={version}"],
    )
    found = buildah.inspect(image.name)
    if found is not None and buildah.labels(found).get(spec.KEY_LABEL) == key:
        return "cached"
    started = time.monotonic()
    print(f"build-images: building {image.name}", file=sys.stderr)
    build_args = ({"VERSION": version, "REVISION": rev} if image.product
                  else {"VERSION": version} if image.version_arg else {})
    buildah.bud(ROOT, image.dockerfile, image.target, image.name, build_args,
                f"{spec.KEY_LABEL}={key}", bundle)
    return f"built {time.monotonic() - started:.0f}s"


def human(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/build-images", description=__doc__.split("\n")[0])
    parser.add_argument("--push", metavar="ADDRESS",
                        help="registry HOST:PORT (plain HTTP) to copy the images to")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="build/push only these (importer, controller, ..., testutil, busybox)")
    parser.add_argument("--refresh-base", action="store_true",
                        help="bootstrap the Debian base again (new point release)")
    args = parser.parse_args(argv)

    version = project_version(ROOT)
    try:
        chosen = spec.select(spec.all_images(version), args.only)
        if args.push:
            spec.mirror_reference(args.push, spec.BASE_IMAGE)
    except ValueError as e:
        parser.error(str(e))

    rows: list[Row] = []
    started = time.monotonic()
    cache = cache_dir()
    try:
        with exclusive(cache), ca_bundle() as bundle:
            base_key = ensure_base(cache, args.refresh_base)
            rev = revision(ROOT)
            for image in chosen:
                action = build_one(image, base_key, version, rev, bundle)
                built = buildah.built(image.name)
                digest, compressed = built.image_id[:19], None
                if args.push:
                    destination = spec.mirror_reference(args.push, image.name)
                    digest = buildah.push(image.name, destination)
                    compressed = buildah.compressed_size(destination)
                    action += ", pushed"
                rows.append(Row(image.name, action, digest, built.size, compressed))
    except subprocess.CalledProcessError as e:
        print(f"build-images: failed: {' '.join(map(str, e.cmd[:3]))} ... exit {e.returncode}",
              file=sys.stderr)
        return 1

    width = max(len(r.name) for r in rows) if rows else 10
    print(f"{'IMAGE':<{width}}  {'ACTION':<18} {'ID/DIGEST':<19}  {'SIZE':>9}  {'COMPRESSED':>10}")
    for r in rows:
        print(f"{r.name:<{width}}  {r.action:<18} {r.digest[:19]:<19}  {human(r.size):>9}  "
              f"{human(r.compressed):>10}")
    print(f"build-images: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

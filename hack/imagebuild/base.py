"""The Debian base image, made from Debian's packages with mmdebstrap.

No public registry is reachable from our machines, so `docker.io/library/debian:bookworm-
slim`, the base the Dockerfiles name, is made locally the way Debian's own slim image is
(a minbase bootstrap without docs, man pages and locales) and tagged with that same name.
The root file system is cached as a tar keyed by the mmdebstrap command line; the image in
buildah's storage carries that key in a label and is left alone while it matches.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# As Debian's slim images: keep copyright files, drop the rest of the docs, man pages,
# info and every locale. Written into /etc/dpkg/dpkg.cfg.d/, so every later apt-get install
# in the Dockerfiles drops them too.
_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
# The image config Debian's own debian:bookworm-slim has.
CONFIG = (
    "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--cmd", "bash",
    "--os", "linux",
)


def mmdebstrap_argv(output: Path) -> list[str]:
    """The bootstrap command line (its every word is part of the base's key)."""
    # merged-usr by a hook, as debootstrap does, instead of the usrmerge package, which
    # would pull all of perl (40 MB) into the base.
    argv = ["mmdebstrap", "--variant=minbase", "--format=tar", "--quiet",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
    argv += [f"--dpkgopt={option}" for option in _DPKG_OPTIONS]
    # No apt lists, no cached .debs, no logs in the image.
    argv += ["--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/log/apt "
             "\"$1\"/var/log/dpkg.log \"$1\"/var/cache/apt/*.bin \"$1\"/var/cache/debconf/*-old"]
    return [*argv, SUITE, str(output), *MIRRORS]


def base_key() -> str:
    """The digest of the bootstrap command and the image config: change either, get a new
    base. (Debian's point releases do not change it; `--refresh-base` rebuilds anyway.)"""
    words = [*mmdebstrap_argv(Path("OUT")), *CONFIG]
    return hashlib.sha256("\0".join(words).encode()).hexdigest()


def ensure_tar(cache: Path, key: str, refresh: bool) -> Path:
    """The cached root file system tar for `key`, bootstrapping it when missing."""
    tar = cache / f"debian-{SUITE}-minbase-{key[:16]}.tar"
    if tar.exists() and not refresh:
        return tar
    cache.mkdir(parents=True, exist_ok=True)
    print(f"build-images: mmdebstrap {SUITE} (minbase) -> {tar}", file=sys.stderr)
    # Written beside the final name and renamed, so an interrupted bootstrap leaves no tar
    # that looks complete.
    fd, partial = tempfile.mkstemp(prefix=".partial-", suffix=".tar", dir=cache)
    os.close(fd)
    try:
        subprocess.run(mmdebstrap_argv(Path(partial)), check=True, stdout=subprocess.DEVNULL)
        os.replace(partial, tar)
    finally:
        Path(partial).unlink(missing_ok=True)
    return tar

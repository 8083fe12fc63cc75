"""Small images for the node's tests, built with buildah on the Debian base and pushed
into the cluster's registry (or another one) with skopeo, as hack/build-images does."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

BASE = "docker.io/library/debian:bookworm-slim"
MARKER = "/etc/cdi-py-node-test"


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout.strip()


def build(name: str, marker: str, *, cmd: str, user: str = "nobody") -> str:
    """An image with ``marker`` in MARKER, entry point ``sh -c``, Cmd ``cmd``, User
    ``user``, WorkingDir /srv/work and GREETING=from-image; returns its local name."""
    found = subprocess.run(["buildah", "inspect", BASE], capture_output=True, check=False)
    if found.returncode != 0:
        raise AssertionError(f"no {BASE} in buildah's storage: run hack/build-images first")
    c = _run("buildah", "from", "--pull-never", BASE)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "marker"
            f.write_text(marker)
            _run("buildah", "copy", "--chmod", "0644", c, str(f), MARKER)
        _run(
            "buildah", "config",
            "--entrypoint", json.dumps(["/bin/sh", "-c"]),
            "--cmd", json.dumps([cmd]),
            "--user", user,
            "--workingdir", "/srv/work",
            "--env", "GREETING=from-image",
            c,
        )  # fmt: skip
        _run("buildah", "commit", "--quiet", c, name)
    finally:
        subprocess.run(["buildah", "rm", c], capture_output=True, check=False)
    return name


def push(local: str, dest: str, creds: str | None = None) -> str:
    """Copy a local image to ``docker://dest`` (plain HTTP); returns its manifest digest."""
    with tempfile.TemporaryDirectory() as tmp:
        digest_file = Path(tmp) / "digest"
        args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        args += ["--digestfile", str(digest_file)]
        if creds:
            args += ["--dest-creds", creds]
        _run(*args, f"containers-storage:{local}", f"docker://{dest}")
        return digest_file.read_text().strip()


def remove(names: list[str]) -> None:
    """Remove the local images a test built (their layers below the base are tiny)."""
    if names:
        subprocess.run(["buildah", "rmi", "-f", *names], capture_output=True, check=False)

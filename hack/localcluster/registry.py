"""The cluster's image registry: Debian's docker-registry on 127.0.0.1, and pushing the
product's images into it.

Why the cluster runs one: no public registry is reachable from our machines, so the
images built from the Dockerfile are pushed here and the simulated nodes pull
``docker.io/...`` and ``quay.io/...`` through it as a mirror (``<address>/<host>/<path>``,
as kind's containerd mirrors do). Plain HTTP, no auth, storage kept per checkout in the
cache (:func:`storage_for`); its address is in ``DIR/registry.json``
(``{"address": "127.0.0.1:PORT"}``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import requests

from localcluster import nodeinit, processes

NAME = "registry"


def config(storage: Path, address: str) -> str:
    """docker-registry's configuration (YAML is a superset of JSON)."""
    return json.dumps(
        {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": address},
        }
    )


def storage_for(repo: Path) -> Path:
    """Where this checkout's clusters keep their registry's blobs, across clusters.

    Why kept: pushing into an empty registry compresses every layer again (~2 minutes
    for the product and test images on 2 cores); into one that has the blobs, skopeo
    skips them. Why per checkout: clusters of different checkouts push the same tags
    (``quay.io/cdi-py/importer:0.1.0``) of different code.
    """
    key = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:12]
    return nodeinit.cache_root() / f"registry-{key}"


def start(root: Path, logs: Path, port: int, cgroup: Path | None, storage: Path) -> tuple[int, str]:
    """Start the registry; returns (pid, address) once it answers."""
    address = f"127.0.0.1:{port}"
    storage.mkdir(parents=True, exist_ok=True)
    cfg = root / "registry.yml"
    cfg.write_text(config(storage, address))
    pid = processes.start(NAME, ["docker-registry", "serve", str(cfg)], logs, cgroup=cgroup)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                (root / "registry.json").write_text(json.dumps({"address": address}) + "\n")
                return pid, address
        if not processes.alive(pid):
            break
        time.sleep(0.1)
    raise RuntimeError(f"the registry did not start; see {logs / (NAME + '.log')}")


def address(root: Path) -> str | None:
    try:
        found: str = json.loads((root / "registry.json").read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None
    return found


class PushError(RuntimeError):
    pass


def push_images(repo: Path, addr: str, log: Path) -> subprocess.Popen[bytes]:
    """``hack/build-images --push ADDR`` in the background, its output in ``log``.

    ``CDI_PY_BUILD_IMAGES`` names another command taking ``--push ADDR`` (a CI that
    builds elsewhere, or a stand-in during development).
    """
    script = Path(os.environ.get("CDI_PY_BUILD_IMAGES") or repo / "hack" / "build-images")
    if not script.exists():
        raise PushError(f"{script} does not exist: cannot build the images to run")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(script), "--push", addr],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_pushed(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for :func:`push_images`; a failure carries the end of its log."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -9
    if rc != 0:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise PushError(f"hack/build-images --push failed (exit {rc}); end of {log}:\n{tail}")

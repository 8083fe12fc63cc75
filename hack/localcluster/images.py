"""Which local program a container image stands for.

Why a table: the simulated node has no container runtime, so an image name maps to
an entry point installed on this machine. Our product images run our console scripts;
the generic test image runs whatever ``command`` the pod gives (``sh -c ...``).
An image not in the table fails to pull, as an unknown image would.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Image repository (any tag or digest) -> default entry point. ``None``: the image
# has no entry point of its own; the pod's command decides (default ``sh``).
IMAGES: dict[str, str | None] = {
    "cdi-py/importer": "cdi-importer",
    "cdi-py/controller": "cdi-controller",
    "cdi-py/apiserver": "cdi-apiserver",
    "cdi-py/uploadproxy": "cdi-uploadproxy",
    "cdi-py/uploadserver": "cdi-uploadserver",
    "cdi-py/cloner": "cdi-cloner",
    "cdi-py/testutil": None,
    "busybox": None,
}


class ImagePullError(Exception):
    """The image is unknown here: the kubelet's ErrImagePull."""


def repository(image: str) -> str:
    """The image's repository: ``docker.io/library/busybox:1.36`` -> ``busybox``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def search_path() -> str:
    """PATH for containers: the running Python's bin dir first, then the system's."""
    bindir = str(Path(sys.executable).parent)
    system = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    return os.pathsep.join([bindir, system])


def resolve(program: str) -> str:
    if "/" in program:
        return program
    found = shutil.which(program, path=search_path())
    if found is None:
        raise FileNotFoundError(program)
    return found


def argv_for(image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The process to run, with Kubernetes' command/args semantics."""
    repo = repository(image)
    if repo not in IMAGES:
        raise ImagePullError(
            f'failed to pull and unpack image "{image}": not found in the local image table'
        )
    if command:
        argv = [*command, *(args or [])]
    else:
        entry = IMAGES[repo]
        argv = [entry or "sh", *(args or [])]
    return [resolve(argv[0]), *argv[1:]]

"""The edge to buildah (and skopeo for pushing): every call to the tools is here."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORAGE = "containers-storage:"


@dataclass(frozen=True)
class Built:
    """What `buildah inspect` says of a built image that the summary reports."""

    name: str
    image_id: str
    size: int  # uncompressed: the sum of its layers' sizes


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, check=True, text=True, stdout=subprocess.PIPE)
    return result.stdout


def inspect(name: str) -> dict[str, Any] | None:
    """`buildah inspect --type image NAME` as JSON, or None when storage has no such image."""
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", name],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
    )
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def labels(found: dict[str, Any]) -> dict[str, str]:
    """The image's labels from an inspect result (OCI config)."""
    config = found.get("OCIv1", {}).get("config", {})
    got: dict[str, str] = config.get("Labels") or {}
    return got


def import_rootfs(tar: Path, name: str, config: tuple[str, ...], label: str) -> None:
    """An image from a root file system tar: from scratch, add, config, commit."""
    container = _run(["buildah", "from", "scratch"]).strip()
    try:
        _run(["buildah", "add", "--quiet", container, str(tar), "/"])
        _run(["buildah", "config", *config, "--label", label, container])
        _run(["buildah", "commit", "--quiet", "--rm", container, name])
    except BaseException:
        subprocess.run(["buildah", "rm", container], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        raise


def bud(context: Path, dockerfile: str, target: str | None, name: str,
        build_args: dict[str, str], label: str, ca_bundle: Path) -> None:
    """`buildah bud --layers` of one target, tagged NAME, with the CA bundle as a secret."""
    argv = [
        "buildah", "bud", "--layers", "--isolation", "chroot", "--quiet",
        "-f", str(context / dockerfile), "-t", name, "--label", label,
        "--secret", f"id=cabundle,src={ca_bundle}",
    ]
    if target:
        argv += ["--target", target]
    for arg, value in sorted(build_args.items()):
        argv += ["--build-arg", f"{arg}={value}"]
    subprocess.run([*argv, str(context)], check=True, stdout=subprocess.DEVNULL, env=clean_env())


def clean_env() -> dict[str, str]:
    """The environment buildah builds in: this machine's PIP_*, PYTHON* and the like must
    not leak into the image's RUN steps (they do with chroot isolation), only what finds
    the tools and the network does."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "http_proxy", "https_proxy", "no_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    return {k: v for k, v in os.environ.items() if k in keep}


def built(name: str) -> Built:
    """Name, id and uncompressed size of an image in storage."""
    found = inspect(name)
    if found is None:
        raise RuntimeError(f"{name} is not in buildah's storage after building it")
    return Built(name=name, image_id=str(found.get("FromImageID", "")),
                 size=uncompressed_size(name))


def uncompressed_size(name: str) -> int:
    """The sum of the image's layers as stored (uncompressed tars): what a node unpacks."""
    raw = _run(["skopeo", "inspect", "--raw", f"{STORAGE}{name}"])
    manifest: dict[str, Any] = json.loads(raw)
    return sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))


def push(name: str, destination: str) -> str:
    """skopeo copy from buildah's storage to a plain-HTTP registry; returns the manifest
    digest the registry now serves. Blobs the registry already has are not sent again."""
    with tempfile.TemporaryDirectory(prefix="cdi-py-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
             "--digestfile", str(digestfile), f"{STORAGE}{name}", f"docker://{destination}"],
            check=True, stdout=subprocess.DEVNULL,
        )
        return digestfile.read_text().strip()


def compressed_size(destination: str) -> int:
    """The sum of the pushed manifest's layer sizes (compressed, as pulled)."""
    raw = _run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{destination}"])
    manifest: dict[str, Any] = json.loads(raw)
    return sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))

"""Pulling images from registries and unpacking them once per digest.

Why a cache shared by nodes and kept across clusters: an image is identified by its
manifest digest, so its unpacked root file system never changes; every node (and every
later cluster on this machine) reuses it. A file lock per digest makes concurrent pulls
of one image unpack it once. Which references a node *has* (for ``IfNotPresent`` and
``Never``) is per node, as a kubelet's image store is.

Tools: ``skopeo inspect --raw`` resolves a reference to its manifest digest (a
HEAD-sized request, repeated at each start for ``Always``), ``skopeo copy`` fetches it
into a temporary OCI layout, ``tar`` extracts each layer not yet on this machine, and
the container's root is an overlay of those layers (:mod:`localcluster.rootfs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import imageref, whiteouts
from localcluster.imageconfig import ImageConfig

log = logging.getLogger(__name__)

_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
INSPECT_TIMEOUT = 60.0
COPY_TIMEOUT = 900.0


class PullError(Exception):
    """The container stays waiting with ``reason`` (ErrImagePull, ErrImageNeverPull,
    InvalidImageName) and ``message``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Image:
    ref: imageref.Ref
    digest: str  # what the reference resolved to in its registry (imageID's digest)
    layers: list[Path]  # lowest first
    config: ImageConfig

    @property
    def image_id(self) -> str:
        return imageref.image_id(self.ref, self.digest)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "cdi-py" / "node-images"


def _why(stderr: str) -> str:
    """not found / unauthorized / unreachable, from skopeo's words."""
    low = stderr.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return "unauthorized"
    if "manifest unknown" in low or "name unknown" in low or "not found" in low:
        return "not found"
    return "unreachable"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


class Cache:
    """Unpacked images on disk, layer by layer as containerd's overlay snapshotter keeps
    them: ``<root>/layers/<blob hex>/`` holds one layer's files (whiteouts converted to
    overlay's), ``<root>/<manifest hex>/{config.json,layers.json}`` names an image's
    layers, lowest first. A product change adds one small top layer; the layers below
    are shared and never unpacked again."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def layer(self, digest: str) -> Path:
        return self.root / "layers" / digest.removeprefix("sha256:")

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key.removeprefix('sha256:')}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, digest: str) -> tuple[list[Path], ImageConfig] | None:
        """The image's layer directories (lowest first) and configuration, if unpacked."""
        e = self.entry(digest)
        try:
            cfg = ImageConfig.from_oci(json.loads((e / "config.json").read_text()))
            layers = [self.layer(d) for d in json.loads((e / "layers.json").read_text())]
        except (OSError, ValueError):
            return None
        if not all(p.is_dir() for p in layers):
            return None
        now = time.time()
        for p in [e / "config.json", *layers]:
            with contextlib.suppress(OSError):
                os.utime(p, (now, now))  # last used, for pruning
        return layers, cfg

    def fill(
        self,
        digest: str,
        source: str,
        flags: list[str],
        manifest: dict[str, Any] | None = None,
        inspect_flags: list[str] | None = None,
    ) -> tuple[list[Path], ImageConfig]:
        """Fetch ``source`` (pinned to ``digest``) and unpack its missing layers.

        With its ``manifest`` known and every layer already here (the six product images
        share theirs; a new component image differs only in its configuration), only the
        configuration is fetched.
        """
        with self._lock(digest):
            found = self.load(digest)
            if found is not None:
                return found
            self.root.mkdir(parents=True, exist_ok=True)
            layers = [str(d["digest"]) for d in (manifest or {}).get("layers") or []]
            if manifest is not None and layers and all(self.layer(d).is_dir() for d in layers):
                started = time.monotonic()
                raw = _skopeo(
                    ["inspect", "--config", "--raw", *(inspect_flags or []), source],
                    INSPECT_TIMEOUT,
                )
                self._record(digest, json.loads(raw), layers)
                log.info(
                    "image unpacked digest=%s layers=%d new_layers=0 pull_s=%.1f unpack_s=0.0",
                    digest,
                    len(layers),
                    time.monotonic() - started,
                )
                found = self.load(digest)
                assert found is not None
                return found
            work = Path(tempfile.mkdtemp(prefix=".pull-", dir=self.root))
            try:
                started = time.monotonic()
                layout = work / "layout"
                _skopeo(["copy", "--quiet", *flags, source, f"oci:{layout}:img"], COPY_TIMEOUT)
                pulled = time.monotonic()
                manifest, config = _layout_manifest(layout)
                layers = [str(d["digest"]) for d in manifest.get("layers") or []]
                fresh = 0
                for d in layers:
                    fresh += self._unpack_layer(d, layout / "blobs" / d.replace(":", "/"), work)
                self._record(digest, config, layers)
                log.info(
                    "image unpacked digest=%s layers=%d new_layers=%d pull_s=%.1f unpack_s=%.1f",
                    digest,
                    len(layers),
                    fresh,
                    pulled - started,
                    time.monotonic() - pulled,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            found = self.load(digest)
            assert found is not None
            return found

    def _record(self, digest: str, config: dict[str, Any], layers: list[str]) -> None:
        """Write an image's entry (its configuration and layer list) atomically."""
        staged = Path(tempfile.mkdtemp(prefix=".pull-", dir=self.root))
        (staged / "config.json").write_text(json.dumps(config))
        (staged / "layers.json").write_text(json.dumps([d.removeprefix("sha256:") for d in layers]))
        shutil.rmtree(self.entry(digest), ignore_errors=True)
        os.replace(staged, self.entry(digest))

    def _unpack_layer(self, digest: str, blob: Path, work: Path) -> int:
        """Extract one layer blob unless already there; 1 if it was extracted."""
        target = self.layer(digest)
        with self._lock(f"layer-{digest.removeprefix('sha256:')}"):
            if target.is_dir():
                return 0
            staged = Path(tempfile.mkdtemp(prefix=".layer-", dir=work))
            done = subprocess.run(
                ["tar", "-x", "-p", "--numeric-owner", "-f", str(blob), "-C", str(staged)],
                capture_output=True,
                text=True,
                check=False,
                timeout=COPY_TIMEOUT,
            )
            if done.returncode != 0:
                raise PullError("ErrImagePull", f"unpack failed: {_last_line(done.stderr)}")
            whiteouts.convert(staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            return 1

    def prune(self, days: float) -> None:
        """Remove images (and then layers) no container started from in ``days`` days."""
        if not self.root.is_dir():
            return
        horizon = time.time() - days * 86400
        for e in self.root.iterdir():
            if e.name.startswith("."):
                if e.name.startswith(".pull-") and _stale(e, horizon):
                    shutil.rmtree(e, ignore_errors=True)  # a pull that died half-way
                continue
            if e.name != "layers" and _stale(e / "config.json", horizon):
                with self._lock(e.name):
                    shutil.rmtree(e, ignore_errors=True)
                    log.info("image pruned digest=sha256:%s", e.name)
        layers = self.root / "layers"
        if layers.is_dir():
            for layer in layers.iterdir():
                if _stale(layer, horizon):
                    with self._lock(f"layer-{layer.name}"):
                        shutil.rmtree(layer, ignore_errors=True)


def _stale(path: Path, horizon: float) -> bool:
    try:
        return path.stat().st_mtime < horizon
    except OSError:
        return True


def _layout_manifest(layout: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The only image of an OCI layout: its manifest and its configuration."""

    def blob(digest: str) -> dict[str, Any]:
        algo, _, hexd = digest.partition(":")
        data: dict[str, Any] = json.loads((layout / "blobs" / algo / hexd).read_text())
        return data

    index = json.loads((layout / "index.json").read_text())
    manifest = blob(index["manifests"][0]["digest"])
    return manifest, blob(manifest["config"]["digest"])


def _skopeo(args: list[str], timeout: float) -> bytes:
    try:
        done = subprocess.run(["skopeo", *args], capture_output=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise PullError("ErrImagePull", f"unreachable: no answer in {timeout:.0f}s") from e
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        raise PullError("ErrImagePull", f"{_why(err)}: {_last_line(err)}")
    return done.stdout


class ImageStore:
    """One node's images: references it has pulled, over the shared :class:`Cache`."""

    def __init__(self, cache: Cache, registry_file: Path, work_dir: Path) -> None:
        self.cache = cache
        self.registry_file = registry_file
        self.work_dir = work_dir
        self._have: dict[str, Image] = {}
        self._lock = threading.Lock()

    def mirror(self) -> str | None:
        try:
            address: str = json.loads(self.registry_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return None
        return address

    def present(self, image: str) -> Image | None:
        with self._lock:
            return self._have.get(str(imageref.parse(image)))

    def ensure(self, image: str, policy: str, auths: dict[str, Any]) -> Image:
        """The image to run ``image`` from, pulling it as ``policy`` says."""
        try:
            ref = imageref.parse(image)
        except imageref.InvalidImageName as e:
            raise PullError("InvalidImageName", f"Failed to apply default image tag: {e}") from e
        with self._lock:
            have = self._have.get(str(ref))
        if policy == "Never" or (policy == "IfNotPresent" and have is not None):
            if have is None:
                raise PullError(
                    "ErrImageNeverPull",
                    f'Container image "{image}" is not present with pull policy of Never',
                )
            return have
        got = self._pull(ref, auths)
        with self._lock:
            self._have[str(ref)] = got
        return got

    def _pull(self, ref: imageref.Ref, auths: dict[str, Any]) -> Image:
        mirror = self.mirror()
        try:
            host, _ = ref.source(mirror)
            source = ref.transport(mirror)
        except LookupError as e:
            raise PullError("ErrImagePull", f'failed to pull image "{ref}": {e}') from e
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fd, authfile = tempfile.mkstemp(prefix=".auth-", suffix=".json", dir=self.work_dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"auths": auths}, f)
            tls = "false" if imageref.plain_http(host, mirror) else "true"
            try:
                raw = _skopeo(
                    ["inspect", "--raw", f"--tls-verify={tls}", f"--authfile={authfile}", source],
                    INSPECT_TIMEOUT,
                )
                digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                platform = _platform_digest(raw) or digest
                pinned = source.rsplit("@", 1)[0] if ref.digest else source.rsplit(":", 1)[0]
                inspect = [f"--tls-verify={tls}", f"--authfile={authfile}"]
                layers, config = self.cache.fill(
                    platform,
                    f"{pinned}@{platform}",
                    [f"--src-tls-verify={tls}", f"--src-authfile={authfile}"],
                    manifest=json.loads(raw) if platform == digest else None,
                    inspect_flags=inspect,
                )
            except PullError as e:
                raise PullError(
                    "ErrImagePull",
                    f'failed to pull and unpack image "{ref}": failed to resolve reference '
                    f'"{ref}": {e.message}',
                ) from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(authfile)
        if ref.digest and ref.digest != digest:
            raise PullError(
                "ErrImagePull", f'failed to pull image "{ref}": registry served digest {digest}'
            )
        return Image(ref, digest, layers, config)


def _platform_digest(raw: bytes) -> str | None:
    """For a multi-platform index, the linux/amd64 manifest's digest."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if doc.get("mediaType") not in _INDEX_TYPES and "manifests" not in doc:
        return None
    for m in doc.get("manifests", []):
        p = m.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == "amd64":
            return str(m["digest"])
    raise PullError("ErrImagePull", "no matching manifest for linux/amd64 in the manifest list")


def pull_auths(secrets: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``auths`` of an authfile from a pod's imagePullSecrets' data (base64 decoded
    already): ``.dockerconfigjson`` (``{"auths": {...}}``) or legacy ``.dockercfg``."""
    out: dict[str, Any] = {}
    for data in secrets:
        if ".dockerconfigjson" in data:
            doc = json.loads(data[".dockerconfigjson"])
            out.update(doc.get("auths") or {})
        elif ".dockercfg" in data:
            out.update(json.loads(data[".dockercfg"]))
    return out

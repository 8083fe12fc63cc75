"""Image references as a kubelet reads them, and where the simulated node pulls them from.

Why pure: what a name means (``busybox`` is ``docker.io/library/busybox:latest``), which
registry serves it (the cluster's mirror for docker.io and quay.io, as kind's containerd
mirrors do; any other host directly) and which pull policy applies are decisions, tested
without a registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
# Hosts served by the cluster's own registry (no public registry is reachable here).
MIRRORED = ("docker.io", "quay.io")
POLICIES = ("Always", "IfNotPresent", "Never")

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::\d+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class InvalidImageName(ValueError):
    """The reference cannot be parsed: the kubelet's ``InvalidImageName``."""


@dataclass(frozen=True)
class Ref:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: what ``imageID`` is prefixed with."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def source(self, mirror: str | None) -> tuple[str, str]:
        """(registry host, repository path) to pull from.

        docker.io and quay.io go through the cluster's mirror as ``<mirror>/<host>/<path>``;
        other hosts are pulled directly. Raises LookupError for a mirrored host when the
        cluster runs no registry.
        """
        if self.domain in MIRRORED:
            if not mirror:
                raise LookupError(f"no registry mirror for {self.domain} in this cluster")
            return mirror, f"{self.domain}/{self.path}"
        return self.domain, self.path

    def transport(self, mirror: str | None) -> str:
        """The ``docker://`` reference skopeo reads, by digest when one is given."""
        host, path = self.source(mirror)
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"docker://{host}/{path}{suffix}"


def parse(image: str) -> Ref:
    """Normalise as the kubelet does: no host -> docker.io, one path element ->
    library/, neither tag nor digest -> latest."""
    if not image or image != image.strip():
        raise InvalidImageName(f'couldn\'t parse image name "{image}": invalid reference format')
    rest, _, digest = image.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidImageName(f'couldn\'t parse image name "{image}": invalid digest')
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidImageName(f'couldn\'t parse image name "{image}": invalid tag')
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if not _DOMAIN.fullmatch(domain) or not path:
        raise InvalidImageName(f'couldn\'t parse image name "{image}": invalid reference format')
    if not all(_COMPONENT.fullmatch(p) for p in path.split("/")):
        raise InvalidImageName(
            f'couldn\'t parse image name "{image}": repository name must be lowercase'
        )
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if tag is None and not digest:
        tag = "latest"
    return Ref(domain, path, tag, digest or None)


def default_policy(image: str) -> str:
    """What the API server sets when a pod leaves ``imagePullPolicy`` out."""
    ref = parse(image)
    if ref.digest:
        return "IfNotPresent"
    return "Always" if ref.tag == "latest" else "IfNotPresent"


def plain_http(host: str, mirror: str | None) -> bool:
    """The cluster's mirror and registries on this machine's loopback speak plain HTTP;
    every other registry is reached over TLS."""
    name = host.rsplit(":", 1)[0] if ":" in host else host
    return host == mirror or name in ("127.0.0.1", "localhost")


def image_id(ref: Ref, digest: str) -> str:
    """``docker.io/library/busybox@sha256:...`` as a kubelet reports ``imageID``."""
    return f"{ref.name}@{digest}"

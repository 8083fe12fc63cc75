"""Parsing the image references CDI users write (pure functions)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

DOCKER_HUB = "registry-1.docker.io"
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class DockerReference:
    registry: str
    """host[:port] as written (Docker Hub resolved to its API host)."""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes into /v2/<repo>/manifests/<reference>: the digest wins over the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"docker://{self.registry}/{self.repository}{suffix}"


@dataclass(frozen=True)
class OciArchiveReference:
    path: str
    ref: str | None = None

    def __str__(self) -> str:
        return f"oci-archive://{self.path}" + (f":{self.ref}" if self.ref else "")


def _invalid(message: str) -> ImportFailure:
    return ImportFailure(Reason.INVALID_CONFIG, message)


def parse_docker(rest: str) -> DockerReference:
    """`host[:port]/repo[:tag|@sha256:...]` (the part after docker://)."""
    name, digest = rest, None
    if "@" in rest:
        name, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise _invalid("image digest must be sha256:<64 hex digits>")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise _invalid("invalid image tag")
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _REPO.match(repository):
        raise _invalid("invalid image repository name")
    return DockerReference(registry=registry, repository=repository, tag=tag, digest=digest)


def parse_reference(url: str) -> DockerReference | OciArchiveReference:
    if url.startswith("docker://"):
        return parse_docker(url[len("docker://") :])
    if url.startswith("oci-archive:"):
        rest = url[len("oci-archive:") :]
        rest = rest[2:] if rest.startswith("//") else rest
        if not rest.startswith("/"):
            raise _invalid("oci-archive path must be absolute")
        path, ref = rest, None
        base = rest.rsplit("/", 1)[-1]
        if ":" in base:
            path, ref = rest.rsplit(":", 1)
        return OciArchiveReference(path=path, ref=ref or None)
    raise _invalid("registry URL must start with docker:// or oci-archive:")

"""Which images exist, built from which Dockerfile target and which inputs (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from cdicontract import images

BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
# The label that records the inputs an image was built from: an image whose label equals
# the current key is up to date and is not rebuilt.
KEY_LABEL = "io.cdi-py.build.inputs"
MISBEHAVING_IMPORTER = "docker.io/cdi-py/importer-misbehaving:latest"
"""The importer with a bad metrics endpoint on request (the scraper's tests and bench)."""

# What the product images are built from: a change anywhere else (tests, docs, hack/)
# leaves them alone.
PRODUCT_INPUTS = (
    "Dockerfile",
    ".containerignore",
    "pyproject.toml",
    "README.md",
    "requirements/runtime.txt",
    "requirements/build.txt",
    "cdicontract",
    "importer",
    "uploadproxy",
    "controller",
    "apiserver",
    "cdictl",
    "cloner",
)


@dataclass(frozen=True)
class ImageSpec:
    """One image: its full name, the Dockerfile (and target) it is built from, its inputs."""

    name: str
    dockerfile: str
    target: str | None
    inputs: tuple[str, ...]
    product: bool
    version_arg: bool = False
    """Built FROM a product image: gets the VERSION build argument too."""

    @property
    def short(self) -> str:
        """`importer` for quay.io/cdi-py/importer:0.1.0, `busybox` for the busybox image."""
        return self.name.rsplit("/", 1)[-1].split(":", 1)[0]


def all_images(version: str) -> list[ImageSpec]:
    """The product's images (one per component) and the tests' helper images."""
    product = [
        ImageSpec(
            name=f"{images.REGISTRY}/{component}:{version}",
            dockerfile="Dockerfile",
            target=component,
            inputs=PRODUCT_INPUTS,
            product=True,
        )
        for component in images.COMPONENTS
    ]
    testutil, busybox = images.TEST_IMAGES
    tests = [
        ImageSpec(
            name=testutil,
            dockerfile="hack/images/testutil.Dockerfile",
            target=None,
            inputs=("hack/images/testutil.Dockerfile", ".containerignore",
                    "requirements/testutil.txt"),
            product=False,
        ),
        ImageSpec(
            name=busybox,
            dockerfile="hack/images/busybox.Dockerfile",
            target=None,
            inputs=("hack/images/busybox.Dockerfile", ".containerignore"),
            product=False,
        ),
        ImageSpec(
            name=MISBEHAVING_IMPORTER,
            dockerfile="hack/images/importer-misbehaving.Dockerfile",
            target=None,
            inputs=(*PRODUCT_INPUTS, "hack/images/importer-misbehaving.Dockerfile",
                    "hack/images/misbehave.py"),
            product=False,
            version_arg=True,
        ),
    ]
    return product + tests


def select(specs: list[ImageSpec], only: list[str]) -> list[ImageSpec]:
    """The images `--only` names, by short name (`importer`, `busybox`) or full name.

    Raises ValueError naming every unknown word and what would have been accepted.
    """
    if not only:
        return specs
    wanted = set(only)
    chosen = [s for s in specs if s.short in wanted or s.name in wanted]
    known = {s.short for s in specs} | {s.name for s in specs}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown image(s) {', '.join(unknown)}; "
            f"one of {', '.join(s.short for s in specs)}"
        )
    return chosen


def normalize(reference: str) -> str:
    """A reference as a kubelet reads it: no host -> docker.io, one path element ->
    library/, no tag or digest -> :latest. `busybox` -> `docker.io/library/busybox:latest`.
    """
    if not reference or reference != reference.strip() or " " in reference:
        raise ValueError(f"not an image reference: {reference!r}")
    first, sep, rest = reference.partition("/")
    has_host = bool(sep) and ("." in first or ":" in first or first == "localhost")
    host, path = (first, rest) if has_host else ("docker.io", reference)
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    last = path.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        path = f"{path}:latest"
    return f"{host}/{path}"


def mirror_reference(address: str, name: str) -> str:
    """Where `--push ADDRESS` puts an image: `ADDRESS/<host>/<path>:<tag>`, the layout the
    simulated node's mirror reads (`127.0.0.1:5000/quay.io/cdi-py/importer:0.1.0`)."""
    if not address or "/" in address or address != address.strip():
        raise ValueError(f"registry address must be HOST:PORT, got {address!r}")
    return f"{address}/{normalize(name)}"

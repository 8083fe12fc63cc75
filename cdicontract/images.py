"""The product's container images: their names, where they are published, their version.

One fact shared by the controller (the images of the pods it creates), `deploy/` (the
manifests' images, rewritten by kustomize `images:`), `hack/build-images` (what it tags)
and the simulated node's registry mirror. An installer points the product at another
registry with kustomize `images:` (manifests and the controller's env) or the
controller's `--importer-image` etc. flags, as CDI's operator passes IMPORTER_IMAGE.
"""

from __future__ import annotations

from importlib import metadata

# Where the release images are published (a path anyone's cluster pulls from).
REGISTRY = "quay.io/cdi-py"
# One image per component; they share every layer but the last (entry point, labels).
COMPONENTS = ("importer", "controller", "apiserver", "uploadproxy", "uploadserver", "cloner")
# The images the tests' own helper pods use (shells, nginx, docker-registry, moto),
# built from Debian packages like the product's base; never shipped.
TEST_IMAGES = ("docker.io/cdi-py/testutil:latest", "docker.io/library/busybox:latest")


def version() -> str:
    """The package version, which is the images' tag."""
    try:
        return metadata.version("cdi-py")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0.0.0"


def default_image(component: str) -> str:
    """`quay.io/cdi-py/importer:0.1.0` for `importer`."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
    return f"{REGISTRY}/{component}:{version()}"

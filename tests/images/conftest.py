from __future__ import annotations

import shutil

import pytest

from tests.images import imagestore


@pytest.fixture(scope="session")
def built_images() -> None:
    """Every image, built (or found current) once per session by hack/build-images."""
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: hack/install-deps.sh")
    imagestore.build_all()

"""The images the tests' own helper pods run (never shipped): each has the programs those
pods name in their `command`."""

from __future__ import annotations

import pytest

from cdicontract import images
from tests.images import imagestore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600), pytest.mark.usefixtures("built_images")]

TESTUTIL, BUSYBOX = images.TEST_IMAGES


@pytest.mark.parametrize(
    ("image", "argv"),
    [
        (TESTUTIL, ["sh", "-c", "command -v cat dd sleep true ps curl python3"]),
        (TESTUTIL, ["python3", "-c", "import ssl, json; print('ok')"]),
        (TESTUTIL, ["/usr/sbin/nginx", "-v"]),
        (TESTUTIL, ["/usr/bin/docker-registry", "--version"]),
        (TESTUTIL, ["moto_server", "--help"]),
        (BUSYBOX, ["sh", "-c", "command -v cat dd sleep true && dd if=/dev/zero of=/dev/null count=1"]),
    ],
    ids=["testutil-shell-tools", "testutil-python3", "testutil-nginx", "testutil-registry",
         "testutil-moto", "busybox-shell-tools"],
)
def test_the_programs_helper_pods_run_are_there(image: str, argv: list[str]) -> None:
    result = imagestore.run(image, argv, user="0:0")
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("image", images.TEST_IMAGES)
def test_helper_images_have_no_entrypoint_so_pods_give_their_command(image: str) -> None:
    assert not imagestore.config(image).get("Entrypoint")

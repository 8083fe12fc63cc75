"""UPLOADSERVER_MODE: upload by default; clone only with the cloner's certificate name."""

from __future__ import annotations

import pytest

from cdicontract import clone
from cdicontract import upload as contract
from uploadproxy.server.config import ConfigError, parse

BASE = {contract.ENV_DEST: "/data/disk.img"}
CLONER = clone.client_name("uid-1")


def test_upload_mode_is_the_default() -> None:
    c = parse([], BASE)
    assert c.mode == clone.SERVER_MODE_UPLOAD and not c.is_clone


def test_clone_mode_with_the_cloners_name() -> None:
    c = parse([], {**BASE, clone.ENV_SERVER_MODE: "clone", contract.ENV_CLIENT_NAME: CLONER})
    assert c.is_clone and c.client_name == CLONER


@pytest.mark.parametrize("name", ["", contract.CLIENT_COMMON_NAME], ids=["none", "the-proxys"])
def test_clone_mode_refuses_any_other_client_name(name: str) -> None:
    with pytest.raises(ConfigError, match=contract.ENV_CLIENT_NAME):
        parse([], {**BASE, clone.ENV_SERVER_MODE: "clone", contract.ENV_CLIENT_NAME: name})


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="upload or clone"):
        parse([], {**BASE, clone.ENV_SERVER_MODE: "mirror"})

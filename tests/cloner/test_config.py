"""The cloner's configuration from the source pod's environment: defaults, precise errors."""

from __future__ import annotations

import pytest

from cdicontract import clone
from cdicontract import clonestream as cs
from cloner.cli import ConfigError, parse

URL = "https://cdi-upload-target.ns.svc:443/v1beta1/clone"


def test_defaults_follow_content_and_mode() -> None:
    c = parse([], {clone.ENV_UPLOAD_URL: URL})
    assert (c.content, c.mode, c.source) == (
        cs.Content.KUBEVIRT,
        cs.Mode.FILESYSTEM,
        "/data/disk.img",
    )
    assert c.tls.cert == f"{clone.TLS_DIR}/tls.crt" and c.tls.ca == f"{clone.TLS_DIR}/ca.crt"
    assert c.termination_log == "/dev/termination-log"
    block = parse([], {clone.ENV_UPLOAD_URL: URL, clone.ENV_VOLUME_MODE: "Block"})
    assert block.source == "/dev/cdi-block-volume"
    archive = parse([], {clone.ENV_UPLOAD_URL: URL, clone.ENV_CONTENT_TYPE: "archive"})
    assert archive.source == "/data"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "https://"),
        ({clone.ENV_UPLOAD_URL: "http://x/v1beta1/clone"}, "https://"),
        ({clone.ENV_UPLOAD_URL: URL, clone.ENV_CONTENT_TYPE: "iso"}, "kubevirt or archive"),
        ({clone.ENV_UPLOAD_URL: URL, clone.ENV_VOLUME_MODE: "tape"}, "Filesystem or Block"),
        (
            {
                clone.ENV_UPLOAD_URL: URL,
                clone.ENV_CONTENT_TYPE: "archive",
                clone.ENV_VOLUME_MODE: "Block",
            },
            "archive content needs a Filesystem source",
        ),
    ],
    ids=["no-url", "plain-http", "content", "mode", "archive-from-block"],
)
def test_bad_values_are_named(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse([], env)

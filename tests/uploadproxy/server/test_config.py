"""The upload server's configuration from the pod's environment: defaults and precise errors."""

from __future__ import annotations

import pytest

from cdicontract import upload as contract
from importer.transferspec import ContentType
from uploadproxy.server.config import ConfigError, parse

BASE = {contract.ENV_DEST: "/data/disk.img"}


def test_defaults() -> None:
    c = parse([], BASE)
    assert c.dest == "/data/disk.img"
    assert c.content_type is ContentType.KUBEVIRT
    assert c.tls_cert == f"{contract.TLS_DIR}/tls.crt"
    assert c.tls_key == f"{contract.TLS_DIR}/tls.key"
    assert c.client_ca == f"{contract.TLS_DIR}/ca.crt"
    assert c.client_name == contract.CLIENT_COMMON_NAME
    assert c.port == contract.UPLOAD_SERVER_PORT
    assert c.metrics_port == contract.UPLOAD_SERVER_METRICS_PORT
    assert c.image_size is None
    assert c.filesystem_overhead == pytest.approx(0.06)
    assert c.termination_log == "/dev/termination-log"
    assert c.pause_timeout == 600.0


def test_everything_from_the_environment() -> None:
    c = parse(
        ["--host", "127.0.0.1", "--port", "9443", "--metrics-port", "off"],
        {
            contract.ENV_DEST: "/dev/cdi-block-volume",
            contract.ENV_CONTENT_TYPE: "archive",
            contract.ENV_IMAGE_SIZE: "10Gi",
            contract.ENV_FILESYSTEM_OVERHEAD: "0.1",
            contract.ENV_PREALLOCATION: "true",
            contract.ENV_OWNER_UID: "uid-7",
            contract.ENV_TLS_DIR: "/tls",
            contract.ENV_CLIENT_NAME: "proxy.example",
            contract.ENV_TERMINATION_LOG: "/tmp/report",
            contract.ENV_PAUSE_TIMEOUT: "30",
        },
    )
    assert (c.host, c.port, c.metrics_port) == ("127.0.0.1", 9443, None)
    assert c.content_type is ContentType.ARCHIVE
    assert c.image_size == 10 << 30
    assert c.filesystem_overhead == pytest.approx(0.1)
    assert c.preallocation is True
    assert c.owner_uid == "uid-7"
    assert c.client_ca == "/tls/ca.crt"
    assert c.client_name == "proxy.example"
    assert c.termination_log == "/tmp/report"
    assert c.pause_timeout == 30.0


def test_archive_goes_to_the_data_directory_by_default() -> None:
    assert parse([], {contract.ENV_CONTENT_TYPE: "archive"}).dest == "/data"


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        (contract.ENV_IMAGE_SIZE, "ten gigs", "UPLOADSERVER_IMAGE_SIZE"),
        (contract.ENV_FILESYSTEM_OVERHEAD, "1.5", "FILESYSTEM_OVERHEAD"),
        (contract.ENV_CONTENT_TYPE, "iso", "kubevirt or archive"),
        (contract.ENV_PAUSE_TIMEOUT, "-1", "positive"),
        (contract.ENV_PAUSE_TIMEOUT, "soon", "seconds"),
    ],
)
def test_bad_values_are_named(var: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse([], {**BASE, var: value})


def test_bad_port() -> None:
    with pytest.raises(ConfigError, match="port"):
        parse(["--port", "70000"], BASE)

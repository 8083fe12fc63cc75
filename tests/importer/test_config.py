from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from cdicontract.sourcekinds import SourceKind
from importer.config import ContentType, MetricsAddr, parse
from importer.errors import ImportFailure


def cfg(argv: list[str], environ: dict[str, str] | None = None):
    return parse(argv, environ or {}, isatty=False)


def test_flags(tmp_path: Path) -> None:
    c = cfg(
        [
            "--source",
            "http",
            "--endpoint",
            "http://h/x.img",
            "--dest",
            str(tmp_path / "d"),
            "--size",
            "10Gi",
            "--checksum",
            "sha256:" + "ab" * 32,
            "--extra-header",
            "A: b",
            "--extra-header",
            "X-Y:  z",
            "--insecure-tls",
            "--preallocation",
            "--metrics-addr",
            "127.0.0.1:0",
            "--filesystem-overhead",
            "0.1",
        ]
    )
    assert c.source is SourceKind.HTTP
    assert c.size == 10 * 2**30
    assert c.checksum is not None and c.checksum.algorithm == "sha256"
    assert c.extra_headers == ("A: b", "X-Y:  z")
    assert c.insecure_tls and c.preallocation
    assert c.metrics == MetricsAddr("127.0.0.1", 0)
    assert c.filesystem_overhead == pytest.approx(0.1)


def test_cdi_environment_is_read_like_the_importer_pod_sets_it(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    env = {
        "IMPORTER_SOURCE": "http",
        "IMPORTER_ENDPOINT": "https://h/x.qcow2",
        "IMPORTER_CONTENTTYPE": "kubevirt",
        "IMPORTER_IMAGE_SIZE": "1Gi",
        "IMPORTER_CERT_DIR": str(certs),
        "INSECURE_TLS": "false",
        "IMPORTER_CHECKSUM": "md5:" + "0" * 32,
        "FILESYSTEM_OVERHEAD": "0.055",
        "PREALLOCATION": "true",
        "IMPORTER_EXTRA_HEADER_1": "B: 2",
        "IMPORTER_EXTRA_HEADER_0": "A: 1",
        "IMPORTER_EXTRA_HEADER_10": "C: 3",
        "IMPORTER_ACCESS_KEY_ID": "user",
        "IMPORTER_SECRET_KEY": "s3cr3t-value",
        "OWNER_UID": "uid-1",
        "IMPORTER_DEST": str(tmp_path / "disk.img"),
    }
    c = cfg([], env)
    assert c.endpoint == "https://h/x.qcow2"
    assert c.size == 2**30
    assert c.cert_dir == str(certs)
    assert not c.insecure_tls
    assert c.preallocation
    assert c.extra_headers == ("A: 1", "B: 2", "C: 3")
    assert (c.access_key, c.secret_key) == ("user", "s3cr3t-value")
    assert c.owner_uid == "uid-1"
    # In a pod, metrics are on by default on CDI's port.
    assert c.metrics == MetricsAddr("0.0.0.0", 8443)
    assert "s3cr3t-value" in c.secrets()


def test_flags_win_over_environment(tmp_path: Path) -> None:
    c = cfg(
        ["--endpoint", "http://flag", "--dest", str(tmp_path / "x")],
        {"IMPORTER_ENDPOINT": "http://env"},
    )
    assert c.endpoint == "http://flag"
    assert c.metrics is None  # not in a pod


def test_secret_dir_gives_credentials(tmp_path: Path) -> None:
    (tmp_path / "accessKeyId").write_text("me\n")
    (tmp_path / "secretKey").write_text("pw\n")
    c = cfg(["--endpoint", "http://h", "--dest", "x", "--secret-dir", str(tmp_path)])
    assert (c.access_key, c.secret_key) == ("me", "pw")


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--dest", "x"], {}, "--endpoint is required"),
        (["--dest", "x", "--endpoint", "h", "--size", "ten"], {}, "invalid size 'ten'"),
        (["--dest", "x", "--endpoint", "h", "--size=-1Gi"], {}, "negative"),
        (["--dest", "x", "--endpoint", "h", "--range-block-size", "8MB"], {}, "invalid size"),
        (["--dest", "x", "--endpoint", "h", "--filesystem-overhead", "1.5"], {}, "overhead"),
        (["--dest", "x", "--endpoint", "h", "--checksum", "crc32:00"], {}, ""),
        (["--dest", "x", "--endpoint", "h", "--extra-header", "no colon"], {}, "Name: value"),
        (["--dest", "x", "--endpoint", "h", "--metrics-addr", "nope"], {}, "HOST:PORT"),
        (["--dest", "x", "--endpoint", "h"], {"IMPORTER_SOURCE": "imageio"}, "unsupported source"),
        (["--dest", "x", "--endpoint", "h", "--bogus", "v"], {}, "unrecognized arguments: --bogus"),
        (["--dest", "x", "--endpoint", "h", "--stall-timeout", "x"], {}, "bad command line"),
        (["--dest", "x", "--endpoint", "h"], {"IMPORTER_SOURCE": "upload"}, "unsupported source"),
        (["--dest", "x", "--source", "blank", "--content-type", "archive"], {}, "archive"),
        (["--dest", "x", "--endpoint", "h", "--content-type", "tarball"], {}, ""),
    ],
)
def test_bad_configuration_is_a_precise_invalid_config(argv, env, needle) -> None:
    with pytest.raises(ImportFailure) as e:
        cfg(argv, env)
    assert e.value.reason is Reason.INVALID_CONFIG
    assert needle in e.value.message


def test_archive_defaults_to_the_data_dir() -> None:
    c = cfg(["--endpoint", "http://h/a.tar", "--content-type", "archive"])
    assert c.content_type is ContentType.ARCHIVE
    assert c.dest == "/data"


def test_secret_extra_headers_are_read_from_mounted_secrets(tmp_path: Path) -> None:
    root = tmp_path / "extraheaders"
    (root / "secret0").mkdir(parents=True)
    (root / "secret1").mkdir()
    (root / "secret0" / "token").write_text("Authorization: Bearer s3cr3t-token\n")
    (root / "secret0" / "..data").mkdir()  # kubelet's hidden link dir is skipped
    (root / "secret1" / "a").write_text("X-A: 1")
    c = cfg(
        ["--endpoint", "http://h", "--dest", "x"],
        {"IMPORTER_EXTRA_HEADER_0": "X-Plain: p", "IMPORTER_SECRET_EXTRA_HEADERS_DIR": str(root)},
    )
    assert c.extra_headers == ("X-Plain: p",)
    # Kept apart: secret headers go to the origin only (see the HTTP redirect tests).
    assert c.secret_headers == ("Authorization: Bearer s3cr3t-token", "X-A: 1")
    assert "Bearer s3cr3t-token" in c.secrets()
    same = cfg(["--endpoint", "http://h", "--dest", "x", "--secret-headers-dir", str(root)])
    assert same.secret_headers == c.secret_headers

"""Pure decisions of the qemu-img runner: argv, progress parsing, failure mapping, safety."""

from __future__ import annotations

import json
import os

import pytest

from cdicontract.reasons import Reason
from importer import qemu
from importer.errors import ImportFailure
from importer.nbd import command, public_url, scrub, secrets_of
from importer.sources.base import RandomAccess
from importer.watchdog import parse_progress


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("    (0.00/100%)\r", [0.0]),
        ("    (12.34/100%)\r    (13.00/100%)\r", [12.34, 13.0]),
        ("    (100.00/100%)\n", [100.0]),
        ("no progress here", []),
        ("(5/100%)", [5.0]),
    ],
    ids=["zero", "two-updates", "done", "none", "integer"],
)
def test_progress_is_parsed_from_qemu_img_p_output(text: str, values: list[float]) -> None:
    assert parse_progress(text) == values


def tree_of(filename: str) -> dict[str, object]:
    assert filename.startswith("json:")
    tree: dict[str, object] = json.loads(filename[len("json:") :])
    return tree


def test_convert_reads_an_explicit_driver_tree_and_writes_raw() -> None:
    argv = qemu.convert_command(
        "/s.qcow2", "qcow2", "/d.img", create=True, target_is_zero=False, direct=True
    )
    assert argv[:2] == ["qemu-img", "convert"]
    assert argv[argv.index("-O") + 1] == "raw"
    assert "-p" in argv
    # No -f: it would override the tree's driver. No backing options of any kind.
    assert not {"-f", "-B", "-o", "-b", "-F", "--image-opts"} & set(argv)
    assert tree_of(argv[-2]) == {
        "driver": "qcow2",
        "backing": None,
        "file": {"driver": "file", "filename": "/s.qcow2"},
    }
    assert argv[-1] == "/d.img"


@pytest.mark.parametrize(
    ("create", "zero", "expect_n", "expect_tiz"),
    [(True, False, False, False), (False, False, True, False), (False, True, True, True)],
    ids=["new-file", "block-device", "pre-zeroed"],
)
def test_existing_targets_are_not_recreated(
    create: bool, zero: bool, expect_n: bool, expect_tiz: bool
) -> None:
    argv = qemu.convert_command(
        "/s", "vmdk", "/dev/x", create=create, target_is_zero=zero, direct=False
    )
    assert ("-n" in argv) is expect_n
    assert ("--target-is-zero" in argv) is expect_tiz


def test_cache_mode_follows_direct_io_support() -> None:
    direct = qemu.convert_command("/s", "vdi", "/d", create=True, target_is_zero=False,
                                  direct=True)
    cached = qemu.convert_command("/s", "vdi", "/d", create=True, target_is_zero=False,
                                  direct=False)
    assert direct[direct.index("-t") + 1] == "none"
    assert cached[cached.index("-t") + 1] == "writeback"


def test_local_paths_cannot_smuggle_qemu_option_strings() -> None:
    # "json:{...}" or "nbd:host:port" as a relative path would be parsed as options by qemu.
    assert qemu.qemu_filename("json:{}").startswith("/")
    assert qemu.qemu_filename("nbd:evil:10809").startswith("/")
    argv = qemu.info_command('json:{"driver":"nbd"}', "raw")
    assert "-f" not in argv
    assert tree_of(argv[-1]) == {
        "driver": "raw",
        "file": {"driver": "file", "filename": os.path.abspath('json:{"driver":"nbd"}')},
    }
    assert tree_of(qemu.info_command("nbd:evil:10809", "raw")[-1])["file"] == {
        "driver": "file", "filename": os.path.abspath("nbd:evil:10809"),
    }


def test_nbd_sources_are_read_through_the_unix_socket_only() -> None:
    argv = qemu.info_command("nbd+unix:///?socket=/w/nbd-1/sock", "vmdk")
    assert tree_of(argv[-1]) == {
        "driver": "vmdk",
        "backing": None,
        "file": {"driver": "nbd", "server": {"type": "unix", "path": "/w/nbd-1/sock"}},
    }
    for uri in ("nbd://evil:10809/x", "nbds://evil/x", "nbd+unix:///export?socket=/s"):
        with pytest.raises(ImportFailure) as e:
            qemu.info_command(uri, "raw")
        assert e.value.reason is Reason.INTERNAL


def test_unknown_format_is_refused_before_running_anything() -> None:
    with pytest.raises(ImportFailure) as e:
        qemu.info("/nonexistent", "qed")
    assert e.value.reason is Reason.UNSUPPORTED_FORMAT


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["qemu-img: error while writing at byte 1: No space left on device"], Reason.NO_SPACE),
        (["qemu-img: error while writing at byte 0: Disk quota exceeded"], Reason.NO_SPACE),
        (["qemu-img: error while reading at byte 0: Input/output error"], Reason.CONVERSION_FAILED),
        ([], Reason.CONVERSION_FAILED),
    ],
    ids=["enospc", "edquot", "read-error", "silent"],
)
def test_convert_failures_map_to_reasons(lines: list[str], reason: Reason) -> None:
    got, message = qemu.classify_failure(lines, 1)
    assert got is reason
    if lines:
        assert lines[0] in message


def _qi(**doc: object) -> qemu.QemuInfo:
    base: dict[str, object] = {"format": "qcow2", "virtual-size": 1 << 20, "filename": "/a"}
    base.update(doc)
    return qemu.parse_info(__import__("json").dumps(base).encode())


@pytest.mark.parametrize(
    ("doc", "unsafe"),
    [
        ({}, False),
        ({"backing-filename": "/etc/shadow"}, True),
        ({"format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}}, True),
        (
            {"format-specific": {"type": "vmdk", "data": {"extents": [{"filename": "/a"}]}}},
            False,
        ),
        (
            {"format-specific": {"type": "vmdk", "data": {"extents": [{"filename": "/etc/x"}]}}},
            True,
        ),
        (
            {
                "filename": 'json:{"driver":"vmdk","file":{"driver":"file","filename":"/a"}}',
                "format-specific": {"type": "vmdk", "data": {"extents": [{"filename": "/a"}]}},
            },
            False,
        ),
        (
            {
                "filename": 'json:{"driver":"vmdk","file":{"driver":"nbd","server":{}}}',
                "format-specific": {
                    "type": "vmdk", "data": {"extents": [{"filename": "nbd+unix://?socket=/s"}]}
                },
            },
            True,
        ),
    ],
    ids=["plain", "backing", "data-file", "vmdk-self-extent", "vmdk-external-extent",
         "json-name-self-extent", "json-name-unknown-extent"],
)
def test_images_referencing_other_files_are_unsafe(doc: dict[str, object], unsafe: bool) -> None:
    qi = _qi(**{k.replace("_", "-"): v for k, v in doc.items()})
    assert (qemu.unsafe_reason(qi) is not None) is unsafe
    if unsafe:
        with pytest.raises(ImportFailure) as e:
            qemu.check_safe(qi)
        assert e.value.reason is Reason.UNSAFE_IMAGE
        assert "/etc" not in e.value.message and "/dev" not in e.value.message


def test_malformed_info_output_is_rejected() -> None:
    with pytest.raises(ValueError):
        qemu.parse_info(b'{"format": "qcow2"}')
    with pytest.raises(ValueError):
        qemu.parse_info(b"[]")


def test_nbdkit_command_puts_filters_before_the_plugin() -> None:
    access = RandomAccess(
        "curl",
        ("url=https://h/x",),
        filters=("retry-request",),
        filter_params=("retry-request-retries=3",),
    )
    argv = command(access, "/tmp/s")
    assert argv.index("--filter=retry-request") < argv.index("curl")
    assert "--readonly" in argv and "--foreground" in argv
    assert argv[argv.index("--unix") + 1] == "/tmp/s"


def test_secrets_on_the_nbdkit_command_line_are_scrubbed() -> None:
    access = RandomAccess(
        "curl",
        (
            "url=https://u:pw1@h/b/k?X-Amz-Signature=sig2&X-Amz-Credential=c",
            "password=pw3",
            "header=Authorization: Bearer tok4",
            "password=+/run/secret/file",
        ),
    )
    secrets = secrets_of(access)
    text = (
        "error fetching https://u:pw1@h/b/k?X-Amz-Signature=sig2&X-Amz-Credential=c "
        "with pw3 and Authorization: Bearer tok4 from /run/secret/file"
    )
    clean = scrub(text, secrets)
    for s in ("pw1", "sig2", "pw3", "tok4"):
        assert s not in clean
    assert "Authorization" in clean and "/run/secret/file" in clean
    assert public_url("https://u:pw1@h:8443/b/k?sig=1") == "https://h:8443/b/k"


@pytest.mark.parametrize(
    ("line", "denied"),
    [
        ("qemu-img: Could not open 'json:{\"driver\":\"qcow2\"}': "
         "Could not open '/v/data.raw': Permission denied", True),
        ("qemu-img: Could not open backing file: Could not open '/b.raw': Permission denied",
         True),
        ("qemu-img: Could not open 'json:{}': Could not open '/s/img': Permission denied", False),
        ("qemu-img: Could not open '/dev/vdb': Permission denied", False),
        ("qemu-img: Could not open '/v/x': No such file or directory", False),
        ("qemu-img: Failed to connect to '127.0.0.1:1': Permission denied", False),
    ],
    ids=["data-file", "backing", "own-input", "own-output", "not-denied", "tcp"],
)
def test_a_denied_open_of_another_file_is_told_apart(line: str, denied: bool) -> None:
    assert qemu.denied_reference([line], ["/s/img", "/dev/vdb"]) is denied

"""`cdictl upload`'s flags: virtctl image-upload's rules and messages, plus cdictl's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdictl import options
from cdictl.options import Target, VolumeMode

BASE = ["dv", "disk", "--image-path", "/img"]


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["dv", "d"], "either image-path or archive-path must be provided", id="no-file"),
    pytest.param(["dv", "d", "--image-path", "a", "--archive-path", "b"],
                 "cannot handle both image-path and archive-path, provide only one", id="both"),
    pytest.param(["dv", "--image-path", "a"], "expecting two args", id="one-arg"),
    pytest.param(["dv", "a", "b", "--image-path", "a"], "expecting two args", id="three-args"),
    pytest.param(["vm", "d", "--image-path", "a"], "invalid resource type vm", id="bad-kind"),
    pytest.param([*BASE, "--volume-mode", "raw"],
                 "Invalid volume mode 'raw'. Valid values are 'block' and 'filesystem'.",
                 id="bad-volume-mode"),
    pytest.param([*BASE, "--volume-mode", "filesystem", "--block-volume"],
                 "incompatible --volume-mode 'filesystem' and --block-volume", id="block-flag"),
    pytest.param(["dv", "d", "--archive-path", "a", "--volume-mode", "block"],
                 "In archive upload the volume mode should always be filesystem",
                 id="archive-block"),
    pytest.param([*BASE, "--size", "1Gi", "--pvc-size", "2Gi"],
                 "--pvc-size and --size can not be specified at the same time", id="two-sizes"),
    pytest.param(["--pvc-name", "p", "pvc", "p", "--image-path", "a"],
                 "cannot use --pvc-name and args", id="pvc-name-and-args"),
    pytest.param([*BASE, "--access-mode", "RWO"], "invalid access mode 'RWO'",
                 id="bad-access-mode"),
    pytest.param([*BASE, "--wait-secs", "-1"], 'invalid argument "-1" for "--wait-secs"',
                 id="negative-wait"),
    pytest.param([*BASE, "--retry", "x"], 'invalid argument "x" for "--retry"', id="bad-retry"),
    pytest.param([*BASE, "--checksum", "crc32:00"], "algorithm must be one of",
                 id="bad-algorithm"),
    pytest.param([*BASE, "--checksum", "sha256:abc"], "a sha256 digest is 64 hex digits",
                 id="short-digest"),
    pytest.param([*BASE, "--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
])
def test_bad_command_lines_are_refused_with_a_precise_message(argv: list[str],
                                                              message: str) -> None:
    with pytest.raises(options.UsageError) as err:
        options.parse(argv)
    assert message in str(err.value)


def test_defaults_are_virtctls() -> None:
    o = options.parse(BASE)
    assert o.target is Target.DV and o.name == "disk" and o.image_path == Path("/img")
    assert (o.size, o.storage_class, o.access_mode, o.volume_mode) == (None, None, None, None)
    assert o.wait_secs == 300 and o.retries == 5
    assert not (o.insecure or o.no_create or o.force_bind or o.archive or o.force_sync)
    assert o.checksum is None and o.namespace is None and o.kubeconfig is None


def test_every_flag_lands_where_it_belongs() -> None:
    o = options.parse(["PVC", "p1", "--archive-path", "/a.tar", "--size", "1Gi",
                       "--storage-class", "local", "--access-mode", "ReadWriteMany",
                       "--volume-mode", "filesystem", "--uploadproxy-url", "proxy:8443",
                       "--insecure", "--no-create", "--force-bind", "-n", "ns1",
                       "--kubeconfig", "/k", "--wait-secs", "7", "--retry", "2",
                       "--checksum", "SHA256", "--no-async"])
    assert o.target is Target.PVC and o.name == "p1" and o.archive
    assert o.image_path == Path("/a.tar") and o.size == "1Gi"
    assert (o.storage_class, o.access_mode, o.volume_mode) == (
        "local", "ReadWriteMany", VolumeMode.FILESYSTEM)
    assert o.uploadproxy_url == "proxy:8443" and o.insecure and o.no_create and o.force_bind
    assert (o.namespace, o.kubeconfig, o.wait_secs, o.retries) == ("ns1", "/k", 7, 2)
    assert o.checksum is not None and o.checksum.algorithm == "sha256"
    assert o.checksum.hexdigest is None and o.force_sync


def test_deprecated_forms_still_work() -> None:
    o = options.parse(["--pvc-name", "old", "--pvc-size", "2Gi", "--block-volume",
                       "--image-path", "/img"])
    assert (o.target, o.name, o.size, o.volume_mode) == (
        Target.PVC, "old", "2Gi", VolumeMode.BLOCK)


def test_zero_retries_still_tries_once() -> None:
    # virtctl with --retry 0 skips the upload and reports success; we try once.
    assert options.parse([*BASE, "--retry", "0"]).retries == 1

"""Pure rules of the node's images: references, mirrors, pull policy, image config, users."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from localcluster import imageconfig, imageref, imagestore, rootfs, sandbox, whiteouts
from localcluster.imageconfig import ImageConfig

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "normal"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("cdi-py/testutil", "docker.io/cdi-py/testutil:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("quay.io/cdi-py/importer:0.1.0", "quay.io/cdi-py/importer:0.1.0"),
        ("localhost/x", "localhost/x:latest"),
        ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"quay.io/a/b:t@{D}", f"quay.io/a/b:t@{D}"),
    ],
)
def test_references_are_normalised_as_a_kubelet_does(image, normal):
    assert str(imageref.parse(image)) == normal


@pytest.mark.parametrize(
    "image", ["", "Busybox", "busybox:", "a/b@sha256:xyz", " busybox", "a//b", "x:y:z/q"]
)
def test_invalid_references_are_refused(image):
    with pytest.raises(imageref.InvalidImageName):
        imageref.parse(image)


@pytest.mark.parametrize(
    ("image", "source"),
    [
        ("busybox", ("127.0.0.1:5000", "docker.io/library/busybox")),
        ("quay.io/cdi-py/importer:0.1.0", ("127.0.0.1:5000", "quay.io/cdi-py/importer")),
        ("127.0.0.1:6000/a/b:c", ("127.0.0.1:6000", "a/b")),
        ("example.invalid/nothing:1", ("example.invalid", "nothing")),
    ],
)
def test_docker_io_and_quay_io_go_through_the_mirror_others_directly(image, source):
    assert imageref.parse(image).source("127.0.0.1:5000") == source


def test_a_mirrored_host_without_a_registry_is_an_error():
    with pytest.raises(LookupError):
        imageref.parse("busybox").source(None)


def test_transport_pins_the_digest_when_given():
    assert imageref.parse(f"a/b:t@{D}").transport("m:1") == f"docker://m:1/docker.io/a/b@{D}"
    assert imageref.parse("a/b").transport("m:1") == "docker://m:1/docker.io/a/b:latest"


@pytest.mark.parametrize(
    ("host", "plain"),
    [("127.0.0.1:5000", True), ("localhost:80", True), ("mirror:1", True), ("quay.io", False)],
)
def test_plain_http_only_for_the_mirror_and_loopback(host, plain):
    assert imageref.plain_http(host, "mirror:1") is plain


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1", "IfNotPresent"),
        (f"busybox@{D}", "IfNotPresent"),
    ],
)
def test_default_pull_policy_is_the_api_servers(image, policy):
    assert imageref.default_policy(image) == policy


def test_image_id_names_the_repository_and_digest():
    assert imageref.image_id(imageref.parse("busybox:1"), D) == f"docker.io/library/busybox@{D}"


CFG = ImageConfig(entrypoint=["/ep"], cmd=["c1", "c2"], env=["A=1", "PATH=/x"], user="app")


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        (None, None, ["/ep", "c1", "c2"]),
        (["/bin/x"], None, ["/bin/x"]),
        (None, ["a"], ["/ep", "a"]),
        (["/bin/x"], ["a"], ["/bin/x", "a"]),
    ],
    ids=["image", "command-drops-cmd", "args-replace-cmd", "both"],
)
def test_command_and_args_over_entrypoint_and_cmd(command, args, argv):
    assert imageconfig.process_argv(CFG, command, args) == argv


def test_image_env_keeps_its_path_and_defaults_one():
    assert imageconfig.image_env(CFG) == {"A": "1", "PATH": "/x"}
    assert imageconfig.image_env(ImageConfig())["PATH"] == imageconfig.DEFAULT_PATH


PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:107:108::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:108:\nextra:x:300:app\n"


@pytest.mark.parametrize(
    ("user", "run_as", "expect"),
    [
        ("app", (None, None), (107, 108, [300, 5], "/home/app")),
        ("107", (None, None), (107, 108, [300, 5], "/home/app")),
        ("app:extra", (None, None), (107, 300, [5], "/home/app")),
        ("", (None, None), (0, 0, [5], "/root")),
        ("app", (2000, None), (2000, 0, [5], "/")),
        ("app", (None, 42), (107, 42, [300, 5], "/home/app")),
        ("4000:4001", (None, None), (4000, 4001, [5], "/")),
    ],
)
def test_user_from_the_image_unless_the_pod_says(user, run_as, expect):
    who = imageconfig.identity(ImageConfig(user=user), PASSWD, GROUP, *run_as, [5])
    assert (who.uid, who.gid, who.groups, who.home) == expect


def test_an_unknown_user_name_is_a_config_error():
    with pytest.raises(imageconfig.UserError, match="nobody"):
        imageconfig.identity(ImageConfig(user="nobody"), PASSWD, GROUP, None, None, [])


def test_config_is_read_from_an_image_configuration_blob():
    blob = {"config": {"Entrypoint": ["/e"], "Env": ["X=1"], "WorkingDir": "/w", "User": "7"}}
    assert ImageConfig.from_oci(blob) == ImageConfig(["/e"], [], ["X=1"], "/w", "7")


def test_pull_secrets_of_both_formats_become_one_authfile():
    modern = {".dockerconfigjson": json.dumps({"auths": {"r1:5000": {"auth": "YTpi"}}})}
    legacy = {".dockercfg": json.dumps({"r2": {"auth": "Yzpk"}})}
    assert imagestore.pull_auths([modern, legacy]) == {
        "r1:5000": {"auth": "YTpi"},
        "r2": {"auth": "Yzpk"},
    }


@pytest.mark.parametrize(
    ("stderr", "why"),
    [
        ("reading manifest 1 in x: manifest unknown: manifest unknown", "not found"),
        ("unable to retrieve auth token: invalid username/password: unauthorized", "unauthorized"),
        ("pinging container registry x: dial tcp: lookup x: no such host", "unreachable"),
    ],
)
def test_pull_failures_say_why(stderr, why):
    assert imagestore._why(stderr) == why


def test_paths_resolve_inside_the_container_root(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")
    (tmp_path / "up").symlink_to("../../..")
    assert sandbox.inside(tmp_path, "/var/run/secrets/x") == "/run/secrets/x"
    assert sandbox.inside(tmp_path, "/up/etc") == "/etc"
    (tmp_path / "loop").symlink_to("/loop")
    with pytest.raises(sandbox.PathError):
        sandbox.inside(tmp_path, "/loop/x")


def test_programs_are_found_on_the_image_path_only(tmp_path: Path):
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert sandbox.find_program(tmp_path, "tool", "/usr/bin:/bin") == "/bin/tool"
    assert sandbox.find_program(tmp_path, "/bin/tool", "") == "/bin/tool"
    assert sandbox.find_program(tmp_path, "bwrap", "/usr/bin:/bin") is None


def test_layers_stack_with_their_whiteouts_as_overlay_lowerdirs(tmp_path: Path):
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    for d in ("keep", "gone", "opaque"):
        (lower / "dir").mkdir(parents=True, exist_ok=True)
        (lower / "dir" / d).write_text(d)
    (lower / "hidden").mkdir()
    (lower / "hidden" / "old").write_text("old")
    (upper / "dir").mkdir(parents=True)
    (upper / "dir" / ".wh.gone").write_text("")
    (upper / "hidden").mkdir()
    (upper / "hidden" / ".wh..wh..opq").write_text("")
    (upper / "hidden" / "new").write_text("new")
    assert whiteouts.convert(upper) == 2
    root = rootfs.mount([lower, upper], tmp_path / "c")
    try:
        assert sorted(p.name for p in (root / "dir").iterdir()) == ["keep", "opaque"]
        assert [p.name for p in (root / "hidden").iterdir()] == ["new"]
    finally:
        rootfs.unmount(tmp_path / "c")
    assert not rootfs.mounted(root)


def test_images_and_layers_unused_for_days_are_pruned(tmp_path: Path):
    cache = imagestore.Cache(tmp_path)
    old, new = "a" * 64, "b" * 64
    for name, layer in ((old, "1" * 64), (new, "2" * 64)):
        (tmp_path / "layers" / layer).mkdir(parents=True)
        (tmp_path / name).mkdir()
        (tmp_path / name / "layers.json").write_text(json.dumps([layer]))
        (tmp_path / name / "config.json").write_text("{}")
    month_ago = time.time() - 30 * 86400
    for p in (tmp_path / old / "config.json", tmp_path / "layers" / ("1" * 64)):
        os.utime(p, (month_ago, month_ago))
    cache.prune(14)
    assert cache.load(f"sha256:{old}") is None
    assert not (tmp_path / "layers" / ("1" * 64)).exists()
    found = cache.load(f"sha256:{new}")
    assert found is not None and found[0] == [tmp_path / "layers" / ("2" * 64)]

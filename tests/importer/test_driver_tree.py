"""The driver trees qemu-img is given: one per format and protocol, built with json.dumps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from importer import drivertree

SOCK = "/w/nbd-abc/sock"
NBD = {"driver": "nbd", "server": {"type": "unix", "path": SOCK}}
FILE = {"driver": "file", "filename": "/scratch/img"}


SOURCES = {"file": ("/scratch/img", FILE), "nbd": (f"nbd+unix:///?socket={SOCK}", NBD)}
# What each format's tree holds besides the protocol node.
FORMAT_NODES: dict[str, dict[str, Any]] = {
    "qcow2": {"driver": "qcow2", "backing": None},
    "vmdk": {"driver": "vmdk", "backing": None},
    "raw": {"driver": "raw"},
    "vpc": {"driver": "vpc"},
    "vhdx": {"driver": "vhdx"},
    "vdi": {"driver": "vdi"},
}


@pytest.mark.parametrize(
    ("fmt", "source", "tree"),
    [
        pytest.param(fmt, source, {**node, "file": proto}, id=f"{fmt}-{kind}")
        for fmt, node in FORMAT_NODES.items()
        for kind, (source, proto) in SOURCES.items()
    ],
)
def test_each_format_gets_its_tree(fmt: str, source: str, tree: dict[str, Any]) -> None:
    assert drivertree.image_tree(source, fmt) == tree
    assert json.loads(drivertree.image_filename(source, fmt).removeprefix("json:")) == tree


@pytest.mark.parametrize(
    "path",
    [
        '/tmp/a"b/c.img',
        "/tmp/back\\slash}{.img",
        '/tmp/x","driver":"nbd',
        "/tmp/ünïcødé/äbc.img",
        "/tmp/new\nline.img",
    ],
    ids=["quote", "backslash-braces", "injection", "unicode", "newline"],
)
def test_no_path_can_change_the_tree(path: str) -> None:
    name = drivertree.image_filename(path, "raw")
    assert name.startswith("json:")
    assert json.loads(name[len("json:") :]) == {
        "driver": "raw",
        "file": {"driver": "file", "filename": path},
    }


def test_relative_paths_and_protocol_lookalikes_are_local_files() -> None:
    for source in ("disk.img", "json:{}", "nbd:evil:10809", "http://x/y"):
        node = drivertree.protocol_node(source)
        assert node["driver"] == "file"
        assert node["filename"].startswith("/")


@pytest.mark.parametrize(
    "path",
    ["/w/plain/sock", "/w/with space/sock", "/w/per%cent/sock", "/w/plus+and&amp/sock",
     "/w/ünï/sock", "/w/q?x=1/sock"],
)
def test_nbd_unix_uris_round_trip(path: str) -> None:
    uri = drivertree.nbd_unix_uri(path)
    assert uri.startswith("nbd+unix:///?socket=/w/")
    assert drivertree.nbd_unix_socket(uri) == path


@pytest.mark.parametrize(
    "uri",
    [
        "nbd://127.0.0.1:10809/x",
        "nbds://host/x",
        "nbd+tcp://host/x",
        "nbd+unix:///export?socket=/s",
        "nbd+unix://host/?socket=/s",
        "nbd+unix:///?socket=/s&tls=on",
        "nbd+unix:///?sock=/s",
        "nbd+unix:///?socket=",
    ],
)
def test_only_our_own_nbd_uris_are_accepted(uri: str) -> None:
    with pytest.raises(ValueError):
        drivertree.image_tree(uri, "raw")

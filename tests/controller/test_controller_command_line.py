"""The controller's images come from one place: its flags, else the env the Deployment sets
(which kustomize `images:` rewrites), else this version's release images."""

from __future__ import annotations

import pytest

from cdicontract import images
from controller import cli

FLAGS = {"importer": "--importer-image", "uploadserver": "--uploadserver-image",
         "cloner": "--cloner-image"}
ENV = {"importer": "IMPORTER_IMAGE", "uploadserver": "UPLOADSERVER_IMAGE",
       "cloner": "CLONER_IMAGE"}


def _image(opts: cli.Options, component: str) -> str:
    return str(getattr(opts, f"{component}_image"))


@pytest.mark.parametrize("component", sorted(FLAGS))
def test_without_env_the_release_image_of_this_version(component):
    opts = cli.parse_args([], env={})
    assert _image(opts, component) == f"quay.io/cdi-py/{component}:{images.version()}"
    assert opts.pull_policy == "IfNotPresent"


@pytest.mark.parametrize("component", sorted(FLAGS))
def test_env_names_the_image(component):
    opts = cli.parse_args([], env={ENV[component]: "registry.example/me/x:dev"})
    assert _image(opts, component) == "registry.example/me/x:dev"
    others = set(FLAGS) - {component}
    assert all(_image(opts, o) == images.default_image(o) for o in others)


@pytest.mark.parametrize("component", sorted(FLAGS))
def test_flag_wins_over_env(component):
    opts = cli.parse_args([FLAGS[component], "r.example/flag:1"],
                          env={ENV[component]: "r.example/env:1"})
    assert _image(opts, component) == "r.example/flag:1"


def test_empty_env_value_falls_back_to_the_release_image():
    # An env entry a patch emptied must not make pods with image "".
    opts = cli.parse_args([], env={"IMPORTER_IMAGE": ""})
    assert opts.importer_image == images.default_image("importer")


def test_pull_policy_from_env():
    assert cli.parse_args([], env={"PULL_POLICY": "Always"}).pull_policy == "Always"

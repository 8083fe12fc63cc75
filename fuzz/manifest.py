"""Target `manifest`: `parse_manifest` of a registry response and `choose_platform`.

Input: one byte choosing the served Content-Type, one choosing the expected digest (none,
the body's own, another), then the body. Invariant: a Manifest with layers of known media
types and well-formed digests, an Index, or ImportFailure; never json's RecursionError, an
OverflowError from a number, or a TypeError from a value of the wrong JSON type.
`choose_platform` answers an entry of the index for that architecture or ImportFailure.
"""

from __future__ import annotations

import hashlib
import sys

from fuzz import harness
from fuzz.harness import require
from importer.errors import ImportFailure
from importer.sources.registry import manifest as m

CONTENT_TYPES: tuple[str | None, ...] = (
    None,
    "",
    m.OCI_MANIFEST,
    m.OCI_INDEX,
    m.DOCKER_MANIFEST,
    m.DOCKER_LIST,
    "application/json",
    m.OCI_MANIFEST + "; charset=utf-8",
)
ARCHITECTURES = ("amd64", "arm64")


def _expected_digest(selector: int, body: bytes) -> str | None:
    if selector % 4 == 0:
        return None
    if selector % 4 == 1:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if selector % 4 == 2:
        return "sha256:" + hashlib.sha256(body + b"x").hexdigest()
    return "sha512:" + hashlib.sha512(body).hexdigest()


def _check_descriptor(d: m.Descriptor) -> None:
    require(d.digest.startswith("sha256:") and len(d.digest) == 71, f"digest {d.digest!r}")
    require(isinstance(d.size, int) and d.size >= 0, f"size {d.size!r}")


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]
    body = data[2:]
    try:
        parsed = m.parse_manifest(body, content_type, _expected_digest(data[1], body))
    except ImportFailure:
        return
    if isinstance(parsed, m.Manifest):
        require(len(parsed.layers) > 0, "manifest without layers")
        for layer in parsed.layers:
            _check_descriptor(layer)
            require(layer.media_type in m.LAYER_COMPRESSION, f"layer type {layer.media_type}")
        _check_descriptor(parsed.config)
        return
    require(isinstance(parsed, m.Index), f"parse_manifest gave {type(parsed).__name__}")
    for entry in parsed.manifests:
        _check_descriptor(entry)
    for arch in ARCHITECTURES:
        try:
            chosen = m.choose_platform(parsed, arch)
        except ImportFailure:
            continue
        require(chosen in parsed.manifests and chosen.architecture == arch, "wrong platform")


TARGET = harness.Target(
    name="manifest",
    one_input=one_input,
    instrument=("importer.sources.registry.manifest", "json"),
    max_len=16 * 1024,
    hooks=frozenset({"str"}),
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])

"""The optional `Upload-Checksum` header: parsed from `--checksum`, or computed from the file.

`--checksum sha256:<hex>` sends a digest the user already has (a published one): the
server checks the body against it, so a corrupt local copy is refused as well as a
corrupt transfer. `--checksum sha256` computes the digest of the file before the first
byte is sent (one extra read of the file; worth it when the network is the worry, not
when the file is huge and local), which is why it is not the default.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
"""The algorithms a DataVolume checksum may use, with their hex digest lengths."""

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BLOCK = 1 << 20


class ChecksumError(ValueError):
    pass


@dataclass(frozen=True)
class ChecksumRequest:
    """What the user asked for: an algorithm, and the digest when they gave one."""

    algorithm: str
    hexdigest: str | None

    def header(self) -> str:
        if self.hexdigest is None:
            raise ChecksumError("the checksum has not been computed yet")
        return f"{self.algorithm}:{self.hexdigest}"


def parse(text: str) -> ChecksumRequest:
    """`alg` or `alg:hex`, with a precise error for anything else."""
    algorithm, sep, digest = text.strip().partition(":")
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise ChecksumError(f"invalid --checksum {text!r}: algorithm must be one of {known}")
    if not sep:
        return ChecksumRequest(algorithm, None)
    want = ALGORITHMS[algorithm]
    if len(digest) != want or not _HEX.match(digest):
        raise ChecksumError(
            f"invalid --checksum {text!r}: a {algorithm} digest is {want} hex digits")
    return ChecksumRequest(algorithm, digest.lower())


def compute(
    path: Path, algorithm: str, progress: Callable[[int], None] | None = None
) -> str:
    """The hex digest of the file, read in constant memory."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            if progress is not None:
                progress(len(block))
    return h.hexdigest()


def resolve(request: ChecksumRequest, path: Path,
            progress: Callable[[int], None] | None = None) -> ChecksumRequest:
    """The request with its digest, computing it from `path` when the user gave none."""
    if request.hexdigest is not None:
        return request
    return ChecksumRequest(request.algorithm, compute(path, request.algorithm, progress))

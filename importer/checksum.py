"""Checksums of the bytes as served (`"<alg>:<hex>"`, CDI's `spec.source.http.checksum`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

# Algorithm -> hex digest length. Only CDI's four; anything else is a configuration error.
DIGEST_HEX_LENGTH: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """`"sha256:ABC..."` -> Checksum; algorithm and hex are case-insensitive, length checked."""
        algorithm, sep, digest = text.strip().partition(":")
        algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
        if not sep or algorithm not in DIGEST_HEX_LENGTH:
            raise ImportFailure(
                Reason.INVALID_CONFIG,
                f"invalid checksum {_shown(text)}: expected <alg>:<hex> with alg one of "
                f"{', '.join(DIGEST_HEX_LENGTH)}",
            )
        expected = DIGEST_HEX_LENGTH[algorithm]
        if len(digest) != expected or not _HEX.fullmatch(digest):
            raise ImportFailure(
                Reason.INVALID_CONFIG,
                f"invalid checksum {_shown(text)}: {algorithm} needs {expected} hex digits",
            )
        return cls(algorithm, digest)

    def hasher(self) -> Hasher:
        return Hasher(self)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


class Hasher:
    """Accumulates the digest of a stream and compares it with the expected one at the end."""

    def __init__(self, expected: Checksum) -> None:
        self.expected = expected
        # md5/sha1 check integrity here, not authenticity; usedforsecurity=False keeps
        # them available on FIPS-mode hosts.
        self._h = hashlib.new(expected.algorithm, usedforsecurity=False)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    @property
    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def verify(self) -> None:
        got = self.hexdigest
        if got != self.expected.hexdigest:
            raise ImportFailure(
                Reason.CHECKSUM_MISMATCH,
                f"checksum mismatch: expected {self.expected}, got {self.expected.algorithm}:{got}",
            )


def _shown(text: str) -> str:
    # A checksum is not a secret, but the field may hold anything a user pasted: bound it.
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


class DigestCheck:
    """An expected digest of a whole object (a registry blob's `sha256:...`), fed in order."""

    def __init__(self, digest: str, reason: Reason, what: str) -> None:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm not in ("sha256", "sha512") or not _HEX.fullmatch(hexdigest):
            raise ImportFailure(Reason.MANIFEST_INVALID, f"unsupported digest {_shown(digest)}")
        self.digest = digest
        self._h = hashlib.new(algorithm)
        self._reason = reason
        self._what = what

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def verify(self) -> None:
        if f"{self._h.name}:{self._h.hexdigest()}" != self.digest:
            raise ImportFailure(self._reason, f"{self._what} does not match {self.digest}")

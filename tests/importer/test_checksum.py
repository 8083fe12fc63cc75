"""Checksum specs and verification."""

from __future__ import annotations

import hashlib

import pytest

from cdicontract.reasons import Reason
from importer.checksum import Checksum
from importer.errors import ImportFailure

DATA = b"a disk image" * 1000


@pytest.mark.parametrize("alg", ["md5", "sha1", "sha256", "sha512"])
def test_matching_digest_verifies(alg: str) -> None:
    digest = hashlib.new(alg, DATA).hexdigest()
    hasher = Checksum.parse(f"{alg.upper()}:{digest.upper()}").hasher()
    for i in range(0, len(DATA), 777):
        hasher.update(DATA[i : i + 777])
    hasher.verify()
    assert hasher.hexdigest == digest


def test_mismatch_names_both_digests() -> None:
    expected = "0" * 64
    hasher = Checksum.parse(f"sha256:{expected}").hasher()
    hasher.update(DATA)
    with pytest.raises(ImportFailure) as exc:
        hasher.verify()
    assert exc.value.reason is Reason.CHECKSUM_MISMATCH
    got = hashlib.sha256(DATA).hexdigest()
    assert exc.value.message == f"checksum mismatch: expected sha256:{expected}, got sha256:{got}"


@pytest.mark.parametrize(
    "spec",
    [
        "sha256",
        "sha256:",
        "crc32:deadbeef",
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 65,
        "md5:" + "g" * 32,
        ":" + "0" * 64,
        "sha256=" + "0" * 64,
        "",
    ],
    ids=[
        "no-digest",
        "empty-digest",
        "unknown-alg",
        "short",
        "long",
        "not-hex",
        "no-alg",
        "bad-sep",
        "empty",
    ],
)
def test_bad_spec_is_invalid_config(spec: str) -> None:
    with pytest.raises(ImportFailure) as exc:
        Checksum.parse(spec)
    assert exc.value.reason is Reason.INVALID_CONFIG


def test_parse_normalizes_case_and_whitespace() -> None:
    c = Checksum.parse("  SHA1:" + "AB" * 20 + " \n")
    assert c == Checksum("sha1", "ab" * 20)
    assert str(c) == "sha1:" + "ab" * 20

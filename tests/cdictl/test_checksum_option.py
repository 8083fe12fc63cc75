from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cdictl import checksum


@pytest.mark.parametrize("algorithm", sorted(checksum.ALGORITHMS))
def test_a_given_digest_is_sent_as_is_and_a_missing_one_computed(tmp_path: Path,
                                                                 algorithm: str) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 3_000_000)
    want = hashlib.new(algorithm, f.read_bytes()).hexdigest()
    given = checksum.parse(f"{algorithm}:{want.upper()}")
    assert checksum.resolve(given, tmp_path / "absent").header() == f"{algorithm}:{want}"
    seen: list[int] = []
    computed = checksum.resolve(checksum.parse(algorithm), f, seen.append)
    assert computed.header() == f"{algorithm}:{want}"
    assert sum(seen) == 3_000_000


def test_a_digest_not_yet_computed_has_no_header() -> None:
    with pytest.raises(checksum.ChecksumError):
        checksum.parse("md5").header()

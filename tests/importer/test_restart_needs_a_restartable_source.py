"""A broken stream restarts the transfer from zero only when the source can start over.

The source is in-memory (pure logic over the Source protocol, as in
test_resuming_reader.py): a raw image whose first read breaks halfway on a server
without ranges. The target is a real file in tmp_path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, TransientSourceError
from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.sources.base import SourceCapabilities, SourceInfo
from importer.transferspec import TransferSpec

MiB = 1 << 20
DATA = (b"restart me " * (MiB // 11 + 1))[: 2 * MiB]


@dataclass
class _Stream:
    breaks: bool

    def __iter__(self) -> Iterator[bytes]:
        end = MiB if self.breaks else len(DATA)
        for i in range(0, end, 64 * 1024):
            yield DATA[i : i + 64 * 1024]
        if self.breaks:
            raise TransientSourceError("connection reset by peer")

    def close(self) -> None:
        pass


@dataclass
class BreaksOnce:
    restartable: bool
    opens: list[int] = field(default_factory=list)

    def info(self) -> SourceInfo:
        return SourceInfo(len(DATA), supports_ranges=False, description="test source")

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.restartable, False, "no ranges")

    def open(self, offset: int = 0) -> _Stream:
        self.opens.append(offset)
        return _Stream(breaks=len(self.opens) == 1)

    def random_reads(self) -> None:
        return None

    def close(self) -> None:
        pass


def spec(tmp_path: Path) -> TransferSpec:
    return TransferSpec(dest=str(tmp_path / "disk.img"), requested_size=8 * MiB,
                        filesystem_overhead=0.0)


def test_a_restartable_source_starts_over_from_zero(tmp_path: Path) -> None:
    source = BreaksOnce(restartable=True)
    report = run_transfer(source, None, spec(tmp_path), Progress(), threading.Event())
    assert source.opens == [0, 0]
    assert report.bytes_written == len(DATA)
    assert (tmp_path / "disk.img").read_bytes()[: len(DATA)] == DATA


def test_a_source_read_once_fails_instead_and_says_why(tmp_path: Path) -> None:
    source = BreaksOnce(restartable=False)
    with pytest.raises(ImportFailure) as e:
        run_transfer(source, None, spec(tmp_path), Progress(), threading.Event())
    assert source.opens == [0]
    assert e.value.reason is Reason.NETWORK_ERROR
    assert "connection reset by peer" in e.value.message
    assert "cannot start over" in e.value.message
    assert list(tmp_path.iterdir()) == []

"""ResumingReader's own decisions (attempt counting, backoff, size checks), on an in-memory source.

The reader is pure logic over the Source protocol; the real-network behaviour is in
test_http_resume_against_bad_server.py. The source here is a byte string with a script
of where each successive open breaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.resume import ResumingReader, exponential_backoff
from importer.sources.base import SourceInfo


@dataclass
class _Body:
    data: bytes
    breaks_after: int | None  # bytes delivered before the failure; None: no failure
    closed: bool = False

    def __iter__(self) -> Iterator[bytes]:
        end = len(self.data) if self.breaks_after is None else self.breaks_after
        for i in range(0, end, 100):
            yield self.data[i : min(i + 100, end)]
        if self.breaks_after is not None:
            raise TransientSourceError("connection reset")

    def close(self) -> None:
        self.closed = True


@dataclass
class BytesSource:
    data: bytes
    script: list[int | None]  # per open: bytes before breaking (None: deliver to the end)
    opens: list[int] = field(default_factory=list)
    bodies: list[_Body] = field(default_factory=list)
    open_error: list[ImportFailure | None] = field(default_factory=list)

    def info(self) -> SourceInfo:
        return SourceInfo(len(self.data), True)

    def open(self, offset: int = 0) -> _Body:
        self.opens.append(offset)
        if self.open_error:
            err = self.open_error.pop(0)
            if err is not None:
                raise err
        breaks = self.script.pop(0) if self.script else None
        body = _Body(self.data[offset:], breaks)
        self.bodies.append(body)
        return body

    def random_reads(self) -> None:
        return None

    def close(self) -> None:
        pass


DATA = bytes(range(256)) * 40  # 10240 bytes


def read_all(reader: ResumingReader) -> bytes:
    return b"".join(reader)


def test_resumes_from_each_break_at_the_delivered_position() -> None:
    source = BytesSource(DATA, [1000, 2500, None])
    sleeps: list[float] = []
    reader = ResumingReader(source, SourceInfo(len(DATA), True), sleep=sleeps.append)
    assert read_all(reader) == DATA
    assert source.opens == [0, 1000, 3500]
    assert reader.resumes == 2 and reader.position == len(DATA)
    assert sleeps == [0.5, 0.5]  # progress between failures resets the backoff
    assert all(b.closed for b in source.bodies)


def test_gives_up_after_max_attempts_without_progress() -> None:
    source = BytesSource(DATA, [300] + [0] * 10)
    sleeps: list[float] = []
    reader = ResumingReader(
        source, SourceInfo(len(DATA), True), max_attempts=4, sleep=sleeps.append
    )
    with pytest.raises(TransientSourceError):
        read_all(reader)
    assert source.opens == [0, 300, 300, 300]
    assert sleeps == [0.5, 1.0, 2.0]
    assert reader.position == 300


def test_on_resume_is_told_the_position_and_the_error() -> None:
    seen: list[tuple[int, Reason]] = []
    reader = ResumingReader(
        BytesSource(DATA, [700, None]),
        SourceInfo(len(DATA), True),
        sleep=lambda _s: None,
        on_resume=lambda pos, err: seen.append((pos, err.reason)),
    )
    assert read_all(reader) == DATA
    assert seen == [(700, Reason.NETWORK_ERROR)]


def test_a_source_without_ranges_restarts_the_pipeline_after_a_partial_body() -> None:
    reader = ResumingReader(
        BytesSource(DATA, [700]), SourceInfo(len(DATA), False), sleep=lambda _s: None
    )
    with pytest.raises(RestartRequired):
        read_all(reader)


def test_a_source_without_ranges_is_retried_from_zero_before_any_byte() -> None:
    source = BytesSource(DATA, [0, None])
    reader = ResumingReader(source, SourceInfo(len(DATA), False), sleep=lambda _s: None)
    assert read_all(reader) == DATA
    assert source.opens == [0, 0]


def test_transient_open_failures_are_retried() -> None:
    source = BytesSource(DATA, [], open_error=[TransientSourceError("503"), None])
    reader = ResumingReader(source, SourceInfo(len(DATA), True), sleep=lambda _s: None)
    assert read_all(reader) == DATA


def test_permanent_failures_are_not_retried() -> None:
    source = BytesSource(DATA, [], open_error=[ImportFailure(Reason.FORBIDDEN, "403")])
    reader = ResumingReader(source, SourceInfo(len(DATA), True), sleep=lambda _s: None)
    with pytest.raises(ImportFailure) as err:
        read_all(reader)
    assert err.value.reason is Reason.FORBIDDEN
    assert source.opens == [0]


def test_restart_required_from_the_source_is_passed_on() -> None:
    source = BytesSource(DATA, [500], open_error=[None, RestartRequired("200 to Range")])
    reader = ResumingReader(source, SourceInfo(len(DATA), True), sleep=lambda _s: None)
    with pytest.raises(RestartRequired):
        read_all(reader)


def test_a_body_shorter_than_the_known_size_is_resumed() -> None:
    # The stream ends "cleanly" at 4000 bytes: with a known size that is a drop, not the end.
    class EndsEarly(BytesSource):
        def open(self, offset: int = 0) -> _Body:
            body = super().open(offset)
            if offset == 0:
                body.data = body.data[:4000]
            return body

    source = EndsEarly(DATA, [])
    reader = ResumingReader(source, SourceInfo(len(DATA), True), sleep=lambda _s: None)
    assert read_all(reader) == DATA
    assert source.opens == [0, 4000]


def test_more_bytes_than_the_known_size_is_an_error() -> None:
    reader = ResumingReader(
        BytesSource(DATA, []), SourceInfo(len(DATA) - 1, True), sleep=lambda _s: None
    )
    with pytest.raises(ImportFailure) as err:
        read_all(reader)
    assert not isinstance(err.value, TransientSourceError)


def test_unknown_size_ends_with_the_stream() -> None:
    reader = ResumingReader(BytesSource(DATA, []), SourceInfo(None, True))
    assert read_all(reader) == DATA


def test_the_consumer_stopping_early_closes_the_stream() -> None:
    source = BytesSource(DATA, [])
    it = iter(ResumingReader(source, SourceInfo(len(DATA), True)))
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert source.bodies[0].closed


@pytest.mark.parametrize(
    ("attempt", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (50, 30.0)]
)
def test_backoff_is_exponential_and_capped(attempt: int, delay: float) -> None:
    assert exponential_backoff(attempt) == delay

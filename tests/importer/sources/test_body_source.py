"""BodySource: a feeding thread and a reading thread, for real, through the bounded buffer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.sources.body import BodyClosed, BodyError, BodySource, BodyState

WAIT = 5.0


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    """Run `fn` on a thread; its result or exception lands in the returned dict."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def read_all(body: BodySource) -> bytes:
    stream = body.open(0)
    try:
        return b"".join(stream)
    finally:
        stream.close()


def test_bytes_arrive_in_order_through_a_small_buffer() -> None:
    body = BodySource(buffer_bytes=1000)
    chunks = [bytes([i]) * (i * 37 % 900 + 1) for i in range(200)]
    reader, out = in_thread(lambda: read_all(body))
    for c in chunks:
        body.put(c, timeout=WAIT)
    body.finish()
    reader.join(WAIT)
    assert out["result"] == b"".join(chunks)
    assert body.offset == sum(map(len, chunks))
    assert body.state is BodyState.FINISHED


def test_a_full_buffer_blocks_put_until_the_reader_takes() -> None:
    body = BodySource(buffer_bytes=10)
    body.put(b"a" * 8)
    with pytest.raises(TimeoutError):
        body.put(b"b" * 8, timeout=0.05)
    assert body.offset == 8  # the refused chunk was not taken
    writer, out = in_thread(lambda: body.put(b"b" * 8, timeout=WAIT))
    time.sleep(0.1)
    assert writer.is_alive()  # still waiting: backpressure
    stream = iter(body.open(0))
    assert next(stream) == b"a" * 8
    writer.join(WAIT)
    assert "error" not in out
    assert next(stream) == b"b" * 8
    assert body.offset == 16


def test_a_chunk_larger_than_the_buffer_goes_through_an_empty_buffer() -> None:
    body = BodySource(buffer_bytes=4)
    body.put(b"x" * 100, timeout=WAIT)
    body.finish()
    assert read_all(body) == b"x" * 100


def test_put_after_finish_is_refused() -> None:
    body = BodySource()
    body.put(b"abc")
    body.finish()
    with pytest.raises(BodyClosed, match="finished"):
        body.put(b"d")
    assert read_all(body) == b"abc"


def test_abandon_fails_the_reader_and_refuses_the_feeder() -> None:
    body = BodySource()
    reader, out = in_thread(lambda: read_all(body))
    body.put(b"some bytes")
    body.abandon("a new upload replaced it")
    reader.join(WAIT)
    error = out["error"]
    assert isinstance(error, ImportFailure)
    assert error.reason is Reason.CANCELLED
    assert "a new upload replaced it" in error.message
    with pytest.raises(BodyClosed, match="replaced"):
        body.put(b"more")


def test_a_paused_body_keeps_the_reader_waiting_until_the_client_resumes() -> None:
    body = BodySource(pause_timeout=WAIT)
    reader, out = in_thread(lambda: read_all(body))
    body.put(b"first ")
    body.pause()
    assert body.state is BodyState.PAUSED
    with pytest.raises(BodyError, match="paused"):
        body.put(b"too early")
    assert body.resume(3) is False  # not where we are
    assert body.resume(body.offset) is True
    body.put(b"second")
    body.finish()
    reader.join(WAIT)
    assert out["result"] == b"first second"


def test_a_client_that_does_not_come_back_fails_the_transfer() -> None:
    body = BodySource(pause_timeout=0.2)
    reader, out = in_thread(lambda: read_all(body))
    body.put(b"x" * 1000)
    body.pause()
    reader.join(WAIT)
    error = out["error"]
    assert isinstance(error, ImportFailure)
    assert error.reason is Reason.NETWORK_ERROR
    assert "did not resume within 0.2 s" in error.message
    assert "byte 1000" in error.message
    assert body.resume(1000) is False
    with pytest.raises(BodyClosed):
        body.put(b"late")


def test_a_reader_that_stops_early_releases_a_blocked_feeder_at_once() -> None:
    body = BodySource(buffer_bytes=10)
    body.put(b"a" * 10)
    writer, out = in_thread(lambda: body.put(b"b" * 10, timeout=WAIT))
    time.sleep(0.05)
    stream = body.open(0)
    next(iter(stream))
    started = time.monotonic()
    stream.close()  # the pipeline failed: nobody reads any more
    writer.join(WAIT)
    assert time.monotonic() - started < 1.0
    assert isinstance(out["error"], BodyClosed)
    assert body.state is BodyState.CLOSED


def test_the_declared_size_is_the_body_size() -> None:
    body = BodySource(size=10)
    assert body.info().size == 10
    body.put(b"x" * 6)
    with pytest.raises(BodyClosed, match="more bytes than the declared 10"):
        body.put(b"y" * 6)
    with pytest.raises(ImportFailure, match="declared 10"):
        read_all(body)

    short = BodySource(size=10)
    short.put(b"x" * 6)
    with pytest.raises(BodyClosed, match="byte 6 of the declared 10"):
        short.finish()
    with pytest.raises(ImportFailure, match="byte 6"):
        read_all(short)


def test_a_body_is_read_once_and_cannot_restart() -> None:
    body = BodySource()
    caps = body.capabilities()
    assert not caps.restartable and not caps.random_access and caps.scratch_reason
    assert body.info().size is None and not body.info().supports_ranges
    assert body.random_reads() is None
    body.open(0)
    with pytest.raises(ImportFailure):
        body.open(0)
    with pytest.raises(ImportFailure):
        BodySource().open(5)

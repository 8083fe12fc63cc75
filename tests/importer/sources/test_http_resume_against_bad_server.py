"""The HTTP source and ResumingReader against a server that misbehaves on purpose."""

from __future__ import annotations

import time

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.resume import ResumingReader
from importer.sources.base import SourceInfo
from importer.sources.http import HttpOptions, HttpSource
from tests.importer.sources.conftest import Payload, sha256_through_reader
from tests.peers.badserver import BadServer
from tests.peers.nginx import free_port

MiB = 1024 * 1024


@pytest.fixture
def bad(bad_server: BadServer, payload: Payload) -> BadServer:
    bad_server.add("disk.img", payload.data)
    return bad_server


@pytest.mark.parametrize(
    "drop_at",
    [[1], [4096, MiB - 1], [MiB, MiB + 1, 2 * MiB], [3 * MiB + 12344]],
    ids=["first-byte", "inside-first-chunk", "chunk-boundaries", "last-byte"],
)
@pytest.mark.parametrize("drop", ["eof", "rst"])
def test_resumes_after_drops_byte_identical_with_range_from_the_right_offset(
    bad: BadServer, payload: Payload, drop_at: list[int], drop: str
) -> None:
    url = bad.url("disk.img", drop_at=",".join(map(str, drop_at)), drop=drop)
    resumed_at: list[int] = []
    with HttpSource(url, HttpOptions()) as source:
        reader = ResumingReader(
            source,
            source.info(),
            sleep=lambda _s: None,
            on_resume=lambda p, _e: resumed_at.append(p),
        )
        body = b"".join(reader)
    assert body == payload.data
    gets = bad.requests_for("disk.img", "GET")
    ranges = [r.range for r in gets]
    assert ranges[0] is None
    # Every re-open asks for exactly the first byte not yet delivered, pinned by If-Range.
    assert ranges[1:] == [f"bytes={p}-" if p else None for p in resumed_at]
    assert all(r.if_range for r in gets[1:] if r.range)
    assert reader.resumes == len(resumed_at) >= 1
    assert resumed_at == sorted(resumed_at)
    assert all(p <= d for p, d in zip(resumed_at, drop_at, strict=False))


def test_a_server_without_range_support_restarts_from_zero(
    bad: BadServer, payload: Payload
) -> None:
    url = bad.url("disk.img", norange=1, drop_at=2 * MiB)
    with HttpSource(url, HttpOptions()) as source:
        info = source.info()
        assert not info.supports_ranges
        assert source.random_reads() is None
        with pytest.raises(RestartRequired):
            b"".join(ResumingReader(source, info, sleep=lambda _s: None))
        # The pipeline's restart: a fresh reader from zero gets the whole, identical body.
        digest, _reader = sha256_through_reader(source)
    assert digest == payload.sha256
    assert all(r.range in (None, "bytes=0-0") for r in bad.requests_for("disk.img"))


def test_a_ranged_request_answered_with_200_requires_a_restart(bad: BadServer) -> None:
    with (
        HttpSource(bad.url("disk.img", norange=1), HttpOptions()) as source,
        pytest.raises(RestartRequired),
    ):
        source.open(1000)


@pytest.mark.parametrize("head", [403, 405])
def test_forbidden_head_falls_back_to_a_one_byte_get(
    bad: BadServer, payload: Payload, head: int
) -> None:
    with HttpSource(bad.url("disk.img", head=head), HttpOptions()) as source:
        info = source.info()
        assert info.size == len(payload.data)
        assert info.supports_ranges
        # Ranged reads need no HEAD (nbdkit only ever talks to our local range proxy).
        window = source.random_reads()
        assert window is not None
        assert window.read_at(1000, 10) == payload.data[1000:1010]
        assert sha256_through_reader(source)[0] == payload.sha256
    probe = bad.requests_for("disk.img", "GET")[0]
    assert probe.range == "bytes=0-0"


def test_head_refused_and_no_ranges_reports_the_plain_length(
    bad: BadServer, payload: Payload
) -> None:
    with HttpSource(bad.url("disk.img", head=405, norange=1), HttpOptions()) as source:
        info = source.info()
    assert info.size == len(payload.data)
    assert not info.supports_ranges


def test_content_length_longer_than_the_body_is_never_accepted(bad: BadServer) -> None:
    with HttpSource(bad.url("disk.img", extra_length=1000), HttpOptions()) as source:
        info = source.info()
        reader = ResumingReader(source, info, max_attempts=3, sleep=lambda _s: None)
        with pytest.raises(ImportFailure) as err:
            b"".join(reader)
    # The announced size can never be reached: bounded retries, then the failure stands
    # (a 416 for the bytes it promised says the object is not what was announced).
    assert err.value.reason in (Reason.NETWORK_ERROR, Reason.SERVER_ERROR, Reason.SOURCE_CHANGED)
    assert reader.position == info.size - 1000  # type: ignore[operator]


def test_a_stream_that_breaks_without_known_length_is_an_incomplete_body(bad: BadServer) -> None:
    with HttpSource(bad.url("disk.img", extra_length=10), HttpOptions()) as source:
        stream = source.open()
        with pytest.raises(TransientSourceError):
            for _ in stream:
                pass
        stream.close()


def test_a_stall_is_detected_and_resumed(bad: BadServer, payload: Payload) -> None:
    url = bad.url("disk.img", stall_at=MiB + 10, stall=3, stall_times=1)
    errors: list[ImportFailure] = []
    start = time.monotonic()
    with HttpSource(url, HttpOptions(read_timeout=0.5)) as source:
        reader = ResumingReader(
            source, source.info(), sleep=lambda _s: None, on_resume=lambda _p, e: errors.append(e)
        )
        body = b"".join(reader)
    assert time.monotonic() - start < 2.5  # did not sit out the 3 s stall
    assert body == payload.data
    assert [e.reason for e in errors] == [Reason.STALLED]
    assert bad.requests_for("disk.img", "GET")[-1].range is not None


def test_a_slow_trickle_that_never_stalls_completes(bad: BadServer, payload: Payload) -> None:
    bad.add("small.img", payload.data[: 256 * 1024])
    with HttpSource(bad.url("small.img", trickle=1), HttpOptions(read_timeout=1)) as source:
        reader = ResumingReader(source, source.info(), sleep=lambda _s: None)
        assert b"".join(reader) == payload.data[: 256 * 1024]
    assert reader.resumes == 0


def test_a_wrong_content_range_requires_a_restart(bad: BadServer) -> None:
    with HttpSource(bad.url("disk.img", bad_range=1), HttpOptions()) as source:
        source.info()
        with pytest.raises(RestartRequired):
            source.open(5000)


def test_a_changed_representation_is_not_resumed(bad: BadServer) -> None:
    url = bad.url("disk.img", etag_changes=1, drop_at=MiB + 5)
    with HttpSource(url, HttpOptions()) as source:
        reader = ResumingReader(source, source.info(), sleep=lambda _s: None)
        with pytest.raises(RestartRequired):
            b"".join(reader)


def test_redirect_to_a_file_url_is_refused(bad: BadServer) -> None:
    with HttpSource(bad.url("disk.img", redirect="file"), HttpOptions()) as source:
        for call in (source.info, source.open):
            with pytest.raises(ImportFailure) as err:
                call()
            assert err.value.reason is Reason.REDIRECT_REFUSED
            assert "file" in err.value.message
    assert all(r.name == "disk.img" for r in bad.requests)


def test_redirect_loop_is_refused(bad: BadServer) -> None:
    with (
        HttpSource(bad.url("disk.img", redirect="loop"), HttpOptions()) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.info()
    assert "redirect loop" in err.value.message
    assert len(bad.requests) == 1


def test_redirect_to_another_path_is_followed(bad: BadServer, payload: Payload) -> None:
    with HttpSource(bad.url("elsewhere", redirect="disk.img"), HttpOptions()) as source:
        assert sha256_through_reader(source)[0] == payload.sha256


@pytest.mark.parametrize(
    ("status", "reason", "transient"),
    [
        (404, Reason.SOURCE_NOT_FOUND, False),
        (403, Reason.FORBIDDEN, False),
        (500, Reason.SERVER_ERROR, True),
        (503, Reason.SERVER_ERROR, True),
    ],
)
def test_error_statuses(bad: BadServer, status: int, reason: Reason, transient: bool) -> None:
    with (
        HttpSource(bad.url("disk.img", status=status), HttpOptions()) as source,
        pytest.raises(ImportFailure) as err,
    ):
        source.open()
    assert err.value.reason is reason
    assert isinstance(err.value, TransientSourceError) is transient


def test_a_passing_503_is_retried_with_backoff(bad: BadServer, payload: Payload) -> None:
    sleeps: list[float] = []
    url = bad.url("disk.img", status=503, status_times=2)
    with HttpSource(url, HttpOptions()) as source:
        info = SourceInfo(len(payload.data), True)  # as probed before the outage
        reader = ResumingReader(source, info, sleep=sleeps.append)
        assert b"".join(reader) == payload.data
    assert sleeps == [0.5, 1.0]
    assert [r.range for r in bad.requests_for("disk.img")] == [None, None, None]


def test_extra_headers_and_user_agent_are_sent_on_every_request(
    bad: BadServer, payload: Payload
) -> None:
    opts = HttpOptions(headers=(("X-Token", "t0k"), ("X-Other", "2")))
    url = bad.url("disk.img", drop_at=MiB)
    with HttpSource(url, opts) as source:
        assert sha256_through_reader(source)[0] == payload.sha256
    reqs = bad.requests_for("disk.img")
    assert len(reqs) >= 3
    for r in reqs:
        assert r.headers["X-Token"] == "t0k" and r.headers["X-Other"] == "2"
        assert r.headers["User-Agent"] == "cdi-py-importer"
        assert r.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("status", [401, 500, 404])
def test_no_secret_from_the_url_reaches_an_error_message(bad: BadServer, status: int) -> None:
    url = bad.url("disk.img", status=status, token="s3cr3t-token").replace(
        "http://", "http://alice:pa55w0rd@"
    )
    with HttpSource(url, HttpOptions()) as source, pytest.raises(ImportFailure) as err:
        source.info()
    assert "s3cr3t-token" not in err.value.message
    assert "pa55w0rd" not in err.value.message and "alice" not in err.value.message
    assert bad.requests[0].headers["Authorization"].startswith("Basic ")


def test_no_secret_reaches_a_connection_error_message() -> None:
    url = f"http://alice:pa55w0rd@127.0.0.1:{free_port()}/x.img?sig=s3cr3t-token"
    with HttpSource(url, HttpOptions()) as source, pytest.raises(TransientSourceError) as err:
        source.open()
    assert "s3cr3t-token" not in str(err.value) and "pa55w0rd" not in str(err.value)

"""cdictl's transfer against a real HTTP server (tests/cdictl/fakeproxy.py) on loopback:
the bytes that arrive, the headers they carry, and the way back after a dropped link."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cdictl import transfer
from tests.cdictl.fakeproxy import Behaviour, running

MiB = 1 << 20


class Bar:
    def __init__(self) -> None:
        self.n = 0
        self.restarts: list[int] = []

    def update(self, n: int) -> None:
        self.n += n

    def restart_at(self, offset: int) -> None:
        self.restarts.append(offset)
        self.n = offset


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(8 * MiB))
    return path


class Tokens:
    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.values.pop(0)


def _mover(tokens: Tokens, said: list[str] | None = None) -> transfer.Transfer:
    return transfer.Transfer(tokens, insecure=False, sleep=lambda _s: None,
                             say=(said.append if said is not None else lambda _m: None))


def test_streams_the_file_with_the_token_and_its_length(image: Path) -> None:
    with running() as proxy:
        mover = _mover(Tokens("good-token"))
        url = mover.choose_url(proxy.url, force_sync=False)
        bar = Bar()
        sent = mover.send(url, image, attempts=5, checksum=None, progress=bar)
    assert bytes(proxy.received) == image.read_bytes()
    assert url.endswith("/v1beta1/upload-async") and sent.resumed == 0
    post = [r for r in proxy.requests if r.method == "POST"]
    assert len(post) == 1
    assert post[0].auth == "Bearer good-token"
    assert post[0].content_type == "application/octet-stream"
    assert post[0].content_length == 8 * MiB
    assert post[0].offset is None and post[0].checksum is None
    assert bar.n == 8 * MiB


def test_memory_stays_flat_whatever_the_file_size(tmp_path: Path) -> None:
    import tracemalloc

    big = tmp_path / "big.img"
    with big.open("wb") as f:
        f.truncate(64 * MiB)
        f.write(b"\x01" * MiB)
    with running(Behaviour(keep_bytes=False)) as proxy:
        mover = _mover(Tokens("good-token"))
        tracemalloc.start()
        try:
            mover.send(f"{proxy.url}/v1beta1/upload", big, attempts=1, checksum=None,
                       progress=Bar())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert proxy.count == 64 * MiB
    assert proxy.sha256.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB of Python memory for a 64 MiB upload"


def test_resumes_after_the_connection_drops_at_half(image: Path) -> None:
    said: list[str] = []
    with running(Behaviour(drop_at=[4 * MiB])) as proxy:
        mover = _mover(Tokens("good-token"), said)
        url = mover.choose_url(proxy.url, force_sync=False)
        bar = Bar()
        sent = mover.send(url, image, attempts=5, checksum=None, progress=bar)
    assert bytes(proxy.received) == image.read_bytes()
    assert sent.resumed == 1
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert [p.offset for p in posts] == [None, str(4 * MiB)]
    assert posts[1].content_length == 4 * MiB
    assert bar.restarts == [0, 4 * MiB] and bar.n == 8 * MiB
    assert said == [f"Resuming upload at byte {4 * MiB} of {8 * MiB}"]


def test_resumes_again_and_again_while_each_attempt_moves_forward(image: Path) -> None:
    drops = [MiB, 2 * MiB, 3 * MiB, 5 * MiB, 6 * MiB, 7 * MiB]
    with running(Behaviour(drop_at=list(drops))) as proxy:
        mover = _mover(Tokens("good-token"))
        sent = mover.send(mover.choose_url(proxy.url, force_sync=False), image, attempts=2,
                          checksum=None, progress=Bar())
    assert bytes(proxy.received) == image.read_bytes()
    assert sent.resumed == len(drops)


def test_a_server_without_resume_gets_the_whole_file_again(image: Path) -> None:
    with running(Behaviour(drop_at=[4 * MiB], forget_after_drop=True)) as proxy:
        mover = _mover(Tokens("good-token"))
        bar = Bar()
        mover.send(mover.choose_url(proxy.url, force_sync=False), image, attempts=5,
                   checksum=None, progress=bar)
    assert bytes(proxy.received) == image.read_bytes()
    assert [r.offset for r in proxy.requests if r.method == "POST"] == [None, None]
    assert bar.restarts == [0, 0]


def test_a_body_that_arrived_whole_before_the_drop_is_not_sent_twice(image: Path) -> None:
    with running(Behaviour(drop_before_answer=True)) as proxy:
        mover = _mover(Tokens("good-token"))
        mover.send(f"{proxy.url}/v1beta1/upload-async", image, attempts=5, checksum=None,
                   progress=Bar())
    assert bytes(proxy.received) == image.read_bytes()
    posts = [r.status for r in proxy.requests if r.method == "POST"]
    assert posts == [-2, 409]  # the second try learns the first one arrived


def test_a_sync_answer_cut_during_its_keepalive_is_not_sent_again(image: Path) -> None:
    with running(Behaviour(keepalive_spaces=10, drop_in_keepalive=True)) as proxy:
        mover = _mover(Tokens("good-token"))
        mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=5, checksum=None,
                   progress=Bar())
    assert bytes(proxy.received) == image.read_bytes()
    assert [r.status for r in proxy.requests] == [-3]


def test_an_expired_token_is_renewed_and_never_printed(image: Path) -> None:
    said: list[str] = []
    with running(Behaviour(tokens={"fresh"})) as proxy:
        tokens = Tokens("fresh")
        mover = _mover(tokens, said)
        mover.set_token("expired")
        mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=5, checksum=None,
                   progress=Bar())
    assert tokens.calls == 1
    assert bytes(proxy.received) == image.read_bytes()
    assert [r.auth for r in proxy.requests] == ["Bearer expired", "Bearer fresh",
                                                "Bearer fresh"]
    assert not any("expired" in m or "fresh" in m for m in said)


def test_a_token_near_its_end_is_renewed_before_it_is_used(image: Path) -> None:
    now = [0.0]
    with running(Behaviour(tokens={"a", "b"}, drop_at=[4 * MiB])) as proxy:
        tokens = Tokens("b")
        mover = transfer.Transfer(tokens, insecure=False, clock=lambda: now[0],
                                  sleep=lambda s: now.__setitem__(0, now[0] + 300))
        mover.set_token("a")
        mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=5, checksum=None,
                   progress=Bar())
    assert bytes(proxy.received) == image.read_bytes()
    assert [r.auth for r in proxy.requests] == ["Bearer a", "Bearer b", "Bearer b"]


def test_a_busy_server_is_tried_again_after_a_pause(image: Path) -> None:
    pauses: list[float] = []
    with running(Behaviour(busy_posts=2)) as proxy:
        mover = transfer.Transfer(Tokens(), insecure=False, sleep=pauses.append)
        mover.set_token("good-token")
        mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=5, checksum=None,
                   progress=Bar())
    assert bytes(proxy.received) == image.read_bytes()
    assert len(pauses) == 2 and all(p > 0 for p in pauses)


def test_gives_up_after_the_attempts_without_progress(image: Path) -> None:
    with running(Behaviour(busy_posts=100)) as proxy:
        mover = _mover(Tokens())
        mover.set_token("good-token")
        with pytest.raises(transfer.TransferError, match="after 3 attempts without progress"):
            mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=3, checksum=None,
                       progress=Bar())
    assert len([r for r in proxy.requests if r.method == "POST"]) == 3


def test_an_offset_the_server_does_not_hold_is_corrected_by_its_416(image: Path) -> None:
    with running(Behaviour(drop_at=[4 * MiB], shrink_after_head=3 * MiB)) as proxy:
        mover = _mover(Tokens("good-token"))
        bar = Bar()
        mover.send(f"{proxy.url}/v1beta1/upload", image, attempts=5, checksum=None,
                   progress=bar)
    assert bytes(proxy.received) == image.read_bytes()
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert [(p.offset, p.status) for p in posts] == [
        (None, -1), (str(4 * MiB), 416), (str(3 * MiB), 200)]
    assert bar.restarts == [0, 4 * MiB, 3 * MiB] and bar.n == 8 * MiB


def test_the_checksum_goes_with_every_attempt(image: Path) -> None:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    with running(Behaviour(drop_at=[4 * MiB])) as proxy:
        mover = _mover(Tokens("good-token"))
        mover.send(mover.choose_url(proxy.url, force_sync=False), image, attempts=5,
                   checksum=f"sha256:{digest}", progress=Bar())
        assert proxy.complete
    assert {r.checksum for r in proxy.requests if r.method == "POST"} == {f"sha256:{digest}"}


def test_a_checksum_mismatch_fails_at_once_with_the_servers_words(image: Path) -> None:
    with running() as proxy:
        mover = _mover(Tokens("good-token"))
        with pytest.raises(transfer.TransferError, match="400, checksum mismatch"):
            mover.send(mover.choose_url(proxy.url, force_sync=False), image, attempts=5,
                       checksum="sha256:" + "0" * 64, progress=Bar())
    assert len([r for r in proxy.requests if r.method == "POST"]) == 1


def test_without_async_the_sync_path_is_used_and_its_keepalive_read(image: Path) -> None:
    ok = '{"reason":"Completed"}'
    with running(Behaviour(no_async=True, keepalive_spaces=20, result_line=ok)) as proxy:
        mover = _mover(Tokens("good-token"))
        url = mover.choose_url(proxy.url, force_sync=False)
        mover.send(url, image, attempts=5, checksum=None, progress=Bar())
    assert url == f"{proxy.url}/v1beta1/upload"
    assert proxy.complete and bytes(proxy.received) == image.read_bytes()


def test_a_failure_reported_after_the_keepalive_fails_the_upload(image: Path) -> None:
    report = '{"message":"image is larger than the volume","reason":"ImageTooLarge"}'
    with running(Behaviour(keepalive_spaces=5, result_line=report)) as proxy:
        mover = _mover(Tokens("good-token"))
        with pytest.raises(transfer.TransferError,
                           match="ImageTooLarge: image is larger than the volume"):
            mover.send(mover.choose_url(proxy.url, force_sync=True), image, attempts=5,
                       checksum=None, progress=Bar())


def test_no_async_flag_skips_the_probe(image: Path) -> None:
    with running() as proxy:
        mover = _mover(Tokens("good-token"))
        assert mover.choose_url(proxy.url, force_sync=True) == f"{proxy.url}/v1beta1/upload"
    assert proxy.requests == []


@pytest.mark.parametrize(("given", "expected"), [
    ("proxy.example", "https://proxy.example"),
    ("proxy.example:31001", "https://proxy.example:31001"),
    ("10.0.0.1:443/prefix", "https://10.0.0.1:443/prefix"),
    ("http://p:80", "http://p:80"),
    ("https://p", "https://p"),
])
def test_a_proxy_url_without_scheme_is_https(given: str, expected: str) -> None:
    assert transfer.normalize_base(given) == expected


@pytest.mark.parametrize(("base", "path", "expected"), [
    ("https://p", transfer.ASYNC_PATH, "https://p/v1beta1/upload-async"),
    ("https://p/", transfer.SYNC_PATH, "https://p/v1beta1/upload"),
    ("https://p/ingress", transfer.SYNC_PATH, "https://p/ingress/v1beta1/upload"),
    ("https://p/v1beta1/upload-async", transfer.ASYNC_PATH, "https://p/v1beta1/upload-async"),
])
def test_upload_paths_join_as_virtctl_joins_them(base: str, path: str, expected: str) -> None:
    assert transfer.with_path(base, path) == expected

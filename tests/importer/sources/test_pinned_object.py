"""PinnedObject: every reader sees the same bytes, the whole object is verified in order."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from cdicontract.reasons import Reason
from importer.checksum import Checksum, DigestCheck
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.pinned import PinnedObject, Window


class Server:
    """A fetch callable over `data` that records calls and can misbehave on purpose."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.after: dict[int, bytes] = {}
        """Serve other bytes from the n-th call on (the server changed its mind)."""
        self.drop_once: set[int] = set()
        """Absolute offsets at which one response is cut short."""
        self.fail: BaseException | None = None

    def __call__(self, start: int, end: int) -> Iterator[bytes]:
        with self.lock:
            self.calls.append((start, end))
            n = len(self.calls)
            if self.fail is not None:
                raise self.fail
            data = self.data
            for k, other in self.after.items():
                if n >= k:
                    data = other
            cut = next((p for p in sorted(self.drop_once) if start < p <= end), None)
            if cut is not None:
                self.drop_once.discard(cut)
        if cut is not None:
            yield data[start:cut]
            raise TransientSourceError("connection dropped")
        piece = data[start : end + 1]
        for i in range(0, len(piece), 333):  # many small chunks, as a socket delivers them
            yield piece[i : i + 333]


def pinned(server: Server, **kw: object) -> PinnedObject:
    kw.setdefault("block", 1024)
    kw.setdefault("sleep", lambda _s: None)
    return PinnedObject(server, len(server.data), description="test object", **kw)  # type: ignore[arg-type]


def read(obj: PinnedObject, start: int, end: int) -> bytes:
    return b"".join(bytes(v) for v in obj.serve(start, end))


def test_small_reads_become_few_block_fetches_and_bytes_are_exact() -> None:
    data = os.urandom(100_000)
    server = Server(data)
    obj = pinned(server, block=16_384)
    for start in range(0, len(data), 1000):
        end = min(len(data) - 1, start + 999)
        assert read(obj, start, end) == data[start : end + 1]
    assert obj.stats.block_loads == len(server.calls) == -(-len(data) // 16_384)
    assert read(obj, 10_000, len(data) - 1) == data[10_000:]
    assert all(isinstance(v, memoryview) for v in obj.serve(0, 10))  # views, no copies
    obj.finish()
    obj.close()


def test_a_checksum_covers_exactly_what_was_read_and_the_rest_is_fetched_for_it() -> None:
    data = os.urandom(10_000)
    server = Server(data)
    obj = pinned(server)
    good = Checksum("sha256", hashlib.sha256(data).hexdigest()).hasher()
    obj.add_verifier(good)
    read(obj, 0, 2000)  # blocks 0-1 (and 2, read ahead)
    read(obj, 7000, 7100)  # out of order: fingerprinted, hashed when its turn comes
    obj.finish()  # loads what was never read, verifies
    assert good.hexdigest == hashlib.sha256(data).hexdigest()
    obj.close()


def test_a_wrong_checksum_fails_in_finish() -> None:
    data = os.urandom(5000)
    obj = pinned(Server(data))
    obj.add_verifier(Checksum("md5", "0" * 32).hasher())
    read(obj, 0, 100)
    with pytest.raises(ImportFailure) as err:
        obj.finish()
    assert err.value.reason is Reason.CHECKSUM_MISMATCH


def test_a_window_is_hashed_alone_and_the_object_digest_covers_everything() -> None:
    data = os.urandom(6000)
    obj = pinned(Server(data))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    obj.add_verifier(DigestCheck(digest, Reason.DIGEST_MISMATCH, "blob"))
    window = Window(obj, 1500, 3000)
    inner = Checksum("sha1", hashlib.sha1(data[1500:4500]).hexdigest()).hasher()
    window.add_verifier(inner)
    assert b"".join(bytes(v) for v in window.fetch(0, 2999)) == data[1500:4500]
    assert window.read_at(2990, 100) == data[4490:4500]  # clipped to the window
    window.finish()
    window.close()


def test_a_tampered_blob_fails_its_digest() -> None:
    data = os.urandom(6000)
    served = bytearray(data)
    served[5000] ^= 1  # outside the part anyone reads
    obj = pinned(Server(bytes(served)))
    obj.add_verifier(
        DigestCheck("sha256:" + hashlib.sha256(data).hexdigest(), Reason.DIGEST_MISMATCH, "blob")
    )
    read(obj, 0, 100)
    with pytest.raises(ImportFailure) as err:
        obj.finish()
    assert err.value.reason is Reason.DIGEST_MISMATCH


def test_a_block_read_again_must_be_the_same_bytes() -> None:
    data = bytes(range(256)) * 16
    server = Server(data)
    obj = pinned(server, keep=1)
    assert read(obj, 0, 10) == data[:11]
    for block in (1, 2, 3):  # evicts block 0
        read(obj, block * 1024, block * 1024 + 10)
    server.after[len(server.calls) + 1] = os.urandom(len(data))  # the server changes
    with pytest.raises(ImportFailure) as err:
        read(obj, 0, 10)
    assert err.value.reason is Reason.SOURCE_CHANGED
    assert "differ between two reads" in err.value.message
    assert obj.failure is err.value  # kept for the pipeline (qemu-img only sees EIO)


def test_a_small_read_is_checked_against_its_block() -> None:
    data = os.urandom(4096)
    server = Server(data)
    obj = pinned(server)
    assert obj.read_at(100, 50) == data[100:150]  # fetched alone, checked later
    assert server.calls == [(100, 149)]
    server.after[2] = bytes(4096)  # clean to the first reader, zeros to the next
    with pytest.raises(ImportFailure) as err:
        read(obj, 0, 1023)
    assert err.value.reason is Reason.SOURCE_CHANGED


def test_finish_checks_small_reads_nobody_else_read() -> None:
    data = os.urandom(4096)
    server = Server(data)
    obj = pinned(server)
    obj.read_at(3000, 10)
    server.after[2] = os.urandom(4096)
    with pytest.raises(ImportFailure) as err:
        obj.finish()
    assert err.value.reason is Reason.SOURCE_CHANGED


def test_small_reads_from_cached_blocks_cost_nothing() -> None:
    data = os.urandom(4096)
    server = Server(data)
    obj = pinned(server, keep=4)
    read(obj, 0, 4095)
    calls = len(server.calls)
    assert obj.read_at(10, 3000) == data[10:3010]
    assert len(server.calls) == calls
    obj.finish()


def test_a_dropped_connection_resumes_inside_the_block() -> None:
    data = os.urandom(5000)
    server = Server(data)
    server.drop_once = {1500, 3100}
    obj = pinned(server, block=2048)
    assert read(obj, 0, len(data) - 1) == data
    assert obj.stats.resumes == 2
    assert (1500, 2047) in server.calls  # resumed at the byte it reached
    obj.finish()


def test_retries_give_up_and_the_failure_is_kept() -> None:
    server = Server(os.urandom(3000))
    server.fail = TransientSourceError("down")
    obj = pinned(server, max_attempts=3)
    with pytest.raises(TransientSourceError):
        read(obj, 0, 10)
    assert obj.failure is not None
    with pytest.raises(ImportFailure):
        obj.finish()


def test_a_source_that_says_it_changed_is_source_changed() -> None:
    server = Server(os.urandom(3000))
    server.fail = RestartRequired("HTTP 200 to a ranged GET")
    obj = pinned(server)
    with pytest.raises(ImportFailure) as err:
        read(obj, 0, 10)
    assert err.value.reason is Reason.SOURCE_CHANGED


def test_permanent_errors_are_not_retried() -> None:
    server = Server(os.urandom(3000))
    server.fail = ImportFailure(Reason.FORBIDDEN, "HTTP 403")
    obj = pinned(server)
    with pytest.raises(ImportFailure) as err:
        read(obj, 0, 10)
    assert err.value.reason is Reason.FORBIDDEN
    assert len(server.calls) <= 2  # the block and its read-ahead, once each


def test_a_long_answer_is_an_error() -> None:
    data = os.urandom(3000)

    def long(start: int, end: int) -> Iterator[bytes]:
        yield data[start : end + 2]

    obj = PinnedObject(long, len(data), description="x", block=1024)
    with pytest.raises(ImportFailure, match="more bytes than asked"):
        read(obj, 0, 10)


def test_memory_is_bounded_by_kept_blocks() -> None:
    data = os.urandom(64 * 1024)
    obj = pinned(Server(data), keep=2)
    read(obj, 0, len(data) - 1)
    assert len(obj._blocks) <= 2


def test_blocks_read_ahead_are_not_kept_alive_after_eviction() -> None:
    import gc
    import tracemalloc

    data = os.urandom(4 << 20)
    tracemalloc.start()
    try:
        obj = pinned(Server(data), block=64 * 1024, keep=2)
        for start in range(0, len(data), 16 * 1024):  # every block, each one read ahead
            read(obj, start, start + 1023)
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The two kept blocks and a read-ahead or two, not the 64 blocks read.
    assert held < 6 * 64 * 1024, held
    assert len(obj._inflight) <= 1
    obj.close()

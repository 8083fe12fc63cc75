"""Backpressure end to end: a slow upload server slows the client, and the proxy's memory
stays flat whatever the image's size."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest

from tests.uploadproxy.proxy.harness import READY, World, rss_kib

pytestmark = pytest.mark.cluster

MIB = 1 << 20
RSS_LIMIT_KIB = 64 * 1024
BLOCK = os.urandom(MIB)


def numbered(total: int, counter: list[int]) -> Iterator[bytes]:
    """Distinct 1 MiB pieces (a lost, doubled or swapped piece changes the hash), counting
    what the client's socket has accepted."""
    for i in range(total // MIB):
        yield i.to_bytes(8, "big") + BLOCK[8:]
        counter[0] += MIB


def digest(total: int) -> str:
    h = hashlib.sha256()
    for piece in numbered(total, [0]):
        h.update(piece)
    return h.hexdigest()


def test_a_paused_upload_server_blocks_the_client(world: World) -> None:
    world.pvc("paused", READY)
    world.behave("paused", pause=True)
    total = 200 * MIB
    sent = [0]
    result: dict[str, int] = {}

    def upload() -> None:
        result["status"] = world.request("POST", "/v1beta1/upload-async",
                                         token=world.token("paused"),
                                         body=numbered(total, sent), length=total).status

    t = threading.Thread(target=upload)
    t.start()
    time.sleep(4)
    first = sent[0]
    rss_paused = rss_kib(world.proxy.pid)  # type: ignore[union-attr]
    time.sleep(3)
    second = sent[0]
    # Only socket buffers (client, proxy both ways, upload server) hold the difference.
    assert second - first <= 2 * MIB, (first, second)
    assert second < 48 * MIB, second
    assert rss_paused < RSS_LIMIT_KIB, rss_paused
    world.release()
    t.join(120)
    assert result == {"status": 200}
    [got] = world.received()
    assert got["size"] == total and got["sha256"] == digest(total)


@pytest.mark.slow
def test_proxy_memory_stays_flat_while_streaming_2_gib(world: World) -> None:
    total = 2048 * MIB
    sent = [0]
    samples: list[tuple[int, int]] = []
    done = threading.Event()
    pid = world.proxy.pid  # type: ignore[union-attr]

    def watch() -> None:
        while not done.wait(0.2):
            samples.append((sent[0], rss_kib(pid)))

    w = threading.Thread(target=watch)
    w.start()
    try:
        resp = world.request("POST", "/v1beta1/upload", token=world.token("disk"),
                             body=numbered(total, sent), length=total, timeout=300)
    finally:
        done.set()
        w.join()
    assert resp.status == 200
    [got] = world.received()
    assert got["size"] == total and got["complete"]
    warm = [rss for at, rss in samples if at >= 128 * MIB]
    assert len(warm) > 5
    peak = max(rss for _, rss in samples)
    assert peak <= RSS_LIMIT_KIB, f"proxy RSS peaked at {peak} KiB"
    assert max(warm) - min(warm) <= 8 * 1024, f"RSS grew while streaming: {warm[0]}..{max(warm)}"

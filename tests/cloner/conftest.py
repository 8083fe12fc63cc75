"""Fixtures of the clone data path: a PKI whose client is the cloner, a clone server, images."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cloner.peers import CLIENT_NAME, CloneServer, cloner_tls_dir
from tests.uploadproxy.server.pki import Pki, make_pki

MiB = 1 << 20


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, CLIENT_NAME)


@pytest.fixture
def tls_dir(tmp_path: Path, pki: Pki) -> Path:
    return cloner_tls_dir(tmp_path, pki)


@pytest.fixture
def clone_server(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., CloneServer]]:
    servers: list[CloneServer] = []

    def start(dest: Path, **env: str) -> CloneServer:
        server = CloneServer(tmp_path, pki, dest, **env)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def write_sparse_image(path: Path, size: int, seed: int = 7) -> int:
    """A sparse image: random and compressible extents, allocated zeros, holes; returns
    the bytes of non-zero data written."""
    rng = random.Random(seed)
    written = 0
    with path.open("wb") as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            kind = rng.choice(["hole", "hole", "random", "text", "zeros"])
            length = min(size - pos, rng.choice([4096, 65536, 300_000, 2 * MiB]))
            if kind == "random":
                f.seek(pos)
                f.write(os.urandom(length))
                written += length
            elif kind == "text":
                f.seek(pos)
                f.write((b"cdi clone %d " % pos * (length // 10 + 1))[:length])
                written += length
            elif kind == "zeros":
                f.seek(pos)
                f.write(bytes(length))
            pos += length
        # A last byte, so the image's end is data (a partial block at the end).
        f.seek(size - 1)
        f.write(b"\x01")
    return written


def same_prefix_then_zeros(target: Path, source: Path) -> None:
    """`target` holds `source`'s bytes, then only zeros to its end."""
    n = source.stat().st_size
    with source.open("rb") as a, target.open("rb") as b:
        while True:
            x = a.read(4 * MiB)
            if not x:
                break
            y = b.read(len(x))
            assert x == y, f"content differs near byte {a.tell() - len(x)}"
        tail = b.read()
    assert tail.count(0) == len(tail), "the target's tail after the image is not zeros"
    assert n <= target.stat().st_size or target.is_block_device()

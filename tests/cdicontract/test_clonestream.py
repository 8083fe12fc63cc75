"""The clone stream's wire format: what the decoder accepts, and every way it refuses."""

from __future__ import annotations

import os

import pytest
import zstandard

from cdicontract import clonestream as cs
from cdicontract.clonestream import (
    FRAME,
    HEADER,
    Content,
    Data,
    Decoder,
    Digest,
    End,
    Header,
    Mode,
    StreamError,
)

SIZE = 1 << 20


def header(size: int = SIZE, start: int = 0) -> bytes:
    return Header(Content.KUBEVIRT, Mode.FILESYSTEM, size, start).encode()


def frame(offset: int, data: bytes, compress: bool = False) -> bytes:
    return cs.encode_data(
        offset, data, zstandard.ZstdCompressor().compress(data) if compress else None
    )


def stream(extents: list[tuple[int, bytes]], size: int = SIZE, compress: bool = False) -> bytes:
    d = Digest()
    out = [header(size)]
    for offset, data in extents:
        out.append(frame(offset, data, compress))
        d.update(offset, data)
    out.append(cs.encode_end(size, d.digest()))
    return b"".join(out)


def decode(raw: bytes, piece: int = 7) -> list[cs.Event]:
    dec = Decoder()
    events: list[cs.Event] = []
    for i in range(0, len(raw), piece):
        events += dec.feed(raw[i : i + piece])
    dec.close()
    return events


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "zstd"])
@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 30], ids=["byte", "odd", "page", "whole"])
def test_round_trip_in_any_cut(compress: bool, piece: int) -> None:
    extents = [(0, b"a" * 1000), (4096, os.urandom(5000)), (SIZE - 10, b"z" * 10)]
    events = decode(stream(extents, compress=compress), piece if piece < 1 << 20 else 1 << 30)
    assert isinstance(events[0], Header) and events[0].size == SIZE
    data = [(e.offset, e.data) for e in events if isinstance(e, Data)]
    assert data == extents
    digest = Digest()
    for offset, d in data:
        digest.update(offset, d)
    assert events[-1] == End(digest.digest())


def test_compression_is_used_only_when_smaller() -> None:
    noise = os.urandom(4096)
    assert (
        cs.encode_data(0, noise, zstandard.ZstdCompressor().compress(noise))[0] == cs.Kind.DATA_RAW
    )
    assert (
        cs.encode_data(0, b"\0" * 4096, zstandard.ZstdCompressor().compress(b"\0" * 4096))[0]
        == cs.Kind.DATA_ZSTD
    )


def test_the_digest_binds_offsets_not_only_bytes() -> None:
    a, b = Digest(), Digest()
    a.update(0, b"xy")
    b.update(1, b"xy")
    assert a.digest() != b.digest()


def test_resumed_stream_starts_where_the_header_says() -> None:
    dec = Decoder()
    events = dec.feed(header(start=8192) + frame(8192, b"q" * 10))
    assert events[0] == Header(Content.KUBEVIRT, Mode.FILESYSTEM, SIZE, 8192)
    with pytest.raises(StreamError, match="overlaps or goes back"):
        Decoder().feed(header(start=8192) + frame(4096, b"q" * 10))


def _refused(raw: bytes, match: str) -> None:
    with pytest.raises(StreamError, match=match):
        decode(raw, 1 << 30)


def test_refuses_bad_magic_and_version() -> None:
    raw = bytearray(header())
    raw[0:8] = b"NOTCLONE"
    _refused(bytes(raw), "bad magic")
    raw = bytearray(header())
    raw[9] = 9
    _refused(bytes(raw), "version 9")


def test_refuses_start_beyond_size() -> None:
    _refused(header(size=10, start=11), "beyond its size")


def test_refuses_extent_beyond_size() -> None:
    _refused(header(size=100) + frame(90, b"x" * 20), "ends beyond the size 100")


def test_refuses_overlapping_and_backwards_extents() -> None:
    _refused(header() + frame(100, b"x" * 10) + frame(105, b"y"), "overlaps or goes back")
    _refused(header() + frame(100, b"x") + frame(50, b"y"), "overlaps or goes back")


def test_refuses_a_frame_larger_than_the_cap() -> None:
    raw = header(size=1 << 30) + cs.FRAME.pack(cs.Kind.DATA_RAW, 0, 0, 8 << 20, 0, 8 << 20)
    dec = Decoder()
    with pytest.raises(StreamError, match="extent length 8388608"):
        dec.feed(raw)  # refused from the frame header, before any payload is buffered


def test_refuses_zero_length_and_lying_raw_payloads() -> None:
    _refused(header() + cs.FRAME.pack(cs.Kind.DATA_RAW, 0, 0, 0, 0, 0), "extent length 0")
    _refused(header() + cs.FRAME.pack(cs.Kind.DATA_RAW, 0, 0, 5, 0, 10) + b"x" * 5, "raw payload 5")


def test_refuses_a_decompression_bomb() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(512 << 20))
    raw = (
        header(size=1 << 30) + cs.FRAME.pack(cs.Kind.DATA_ZSTD, 0, 0, len(bomb), 0, 1 << 20) + bomb
    )
    _refused(raw, "declares 536870912 bytes")


def test_refuses_zstd_without_size_or_with_trailing_bytes() -> None:
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 4096)
    _refused(
        header() + cs.FRAME.pack(cs.Kind.DATA_ZSTD, 0, 0, len(unsized), 0, 4096) + unsized,
        "declares -1",
    )
    trailing = zstandard.ZstdCompressor().compress(b"a" * 4096) + b"junk"
    _refused(
        header() + cs.FRAME.pack(cs.Kind.DATA_ZSTD, 0, 0, len(trailing), 0, 4096) + trailing,
        "not one frame",
    )


def test_refuses_a_compressed_payload_not_smaller() -> None:
    _refused(
        header() + cs.FRAME.pack(cs.Kind.DATA_ZSTD, 0, 0, 10, 0, 10) + b"x" * 10,
        "compressed payload 10",
    )


def test_refuses_garbage_zstd() -> None:
    _refused(
        header() + cs.FRAME.pack(cs.Kind.DATA_ZSTD, 0, 0, 8, 0, 4096) + b"garbage!",
        "bad zstd payload",
    )


def test_refuses_unknown_kind_and_flags() -> None:
    _refused(header() + cs.FRAME.pack(9, 0, 0, 0, 0, 0), "unknown frame kind 9")
    _refused(header() + cs.FRAME.pack(cs.Kind.DATA_RAW, 1, 0, 1, 0, 1) + b"x", "unknown flags")


def test_refuses_truncated_streams() -> None:
    full = stream([(0, b"abc")])
    for cut in (0, 10, len(header()) + 5, len(full) - 1):
        with pytest.raises(StreamError, match="truncated"):
            decode(full[:cut], 1 << 30)


def test_refuses_bytes_after_end_and_end_elsewhere() -> None:
    with pytest.raises(StreamError, match="after the END"):
        decode(stream([(0, b"abc")]) + b"x", 1)
    _refused(header() + cs.encode_end(SIZE - 1, bytes(32)), "END frame at")
    _refused(
        header() + cs.FRAME.pack(cs.Kind.END, 0, 0, 3, SIZE, 0) + b"abc", "END frame of payload 3"
    )


def test_frames_cut_as_the_cloner_sends_them() -> None:
    """Frame header and payload as separate pieces (a payload piece is passed on whole),
    and pieces that straddle frames: the same events as one piece."""
    extents = [(0, os.urandom(3000)), (8192, os.urandom(4096)), (16384, b"r" * 500)]
    raw = stream(extents)
    cuts = [HEADER.size]
    pos = HEADER.size
    for _, data in extents:
        cuts += [pos + FRAME.size, pos + FRAME.size + len(data)]
        pos += FRAME.size + len(data)
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    dec = Decoder()
    events = [e for p in pieces for e in dec.feed(p)]
    assert events == decode(raw, 1 << 30)
    mixed = [b"".join(pieces[:2]), pieces[2][:10], pieces[2][10:] + pieces[3][:5], *pieces[3:]]
    mixed[3] = mixed[3][5:]
    dec = Decoder()
    assert [e for p in mixed for e in dec.feed(p)] == events


@pytest.mark.parametrize(
    ("buf", "base", "runs"),
    [
        (bytes(8), 0, []),
        (b"\0\0\1\0" + bytes(4), 0, [(0, 4)]),
        (bytes(4) + b"\1" + bytes(3), 0, [(4, 8)]),
        (b"\1" + bytes(11), 2, [(0, 2)]),  # blocks aligned to the absolute offset
        (bytes(6) + b"\1" * 6, 2, [(6, 10), (10, 12)]),
        (b"\0\1\1\0" + bytes(4), 0, [(0, 4)]),  # zero at both ends, data inside
        (memoryview(bytes(4) + b"\0\0\0\1"), 0, [(4, 8)]),
    ],
    ids=["zeros", "first", "second", "shifted", "run-ends-at-buffer", "middle", "view"],
)
def test_data_runs_of_aligned_blocks(
    buf: bytes | memoryview, base: int, runs: list[tuple[int, int]]
) -> None:
    merged: list[tuple[int, int]] = []
    for s, e in cs.data_runs(buf, base, block=4):
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    expected: list[tuple[int, int]] = []
    for s, e in runs:
        if expected and expected[-1][1] == s:
            expected[-1] = (expected[-1][0], e)
        else:
            expected.append((s, e))
    assert merged == expected


def test_volume_modes_by_name() -> None:
    assert Mode.from_volume_mode("block") is Mode.BLOCK
    assert Mode.FILESYSTEM.volume_mode == "Filesystem"
    with pytest.raises(ValueError, match="Filesystem or Block"):
        Mode.from_volume_mode("tape")


def test_refuses_bytes_after_end_in_the_same_piece() -> None:
    with pytest.raises(StreamError, match="after the END"):
        Decoder().feed(stream([(0, b"abc")]) + b"x")

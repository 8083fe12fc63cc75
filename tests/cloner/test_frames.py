"""The cloner's frames: decodable, the same digest however the stream was resumed."""

from __future__ import annotations

import os
from collections.abc import Iterator

from cdicontract import clonestream as cs
from cloner.frames import FrameSource
from cloner.pays import WireRate

EXTENTS = [(0, os.urandom(5000)), (65536, b"t" * 300_000), (4 << 20, os.urandom(70_000))]
SIZE = 8 << 20


def extents(start: int) -> Iterator[tuple[int, bytes]]:
    return iter([(o, d) for o, d in EXTENTS if o + len(d) > start])


def source(wire: WireRate | None = None) -> FrameSource:
    header = cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, SIZE)
    return FrameSource(header, extents, wire=wire)


class FixedWire(WireRate):
    """A wire whose rate the test sets: the sender's own timings (which depend on the
    machine's load while the test consumes the frames) do not move it."""

    def observe(self, seconds: float, nbytes: int) -> None:
        return


SLOW_WIRE = 1e-3  # seconds per byte: anything that shrinks is worth compressing
FAST_WIRE = 1e-15  # nothing is worth the CPU


def decode(pieces: Iterator[bytes]) -> list[cs.Event]:
    dec = cs.Decoder()
    events: list[cs.Event] = []
    for p in pieces:
        events += dec.feed(bytes(p))
    dec.close()
    return events


def test_frames_decode_to_the_extents_and_their_digest() -> None:
    events = decode(source().frames(0))
    data = [(e.offset, e.data) for e in events if isinstance(e, cs.Data)]
    assert data == EXTENTS
    digest = cs.Digest()
    for o, d in EXTENTS:
        digest.update(o, d)
    assert events[-1] == cs.End(digest.digest())


def test_compressible_extents_go_compressed_random_ones_raw_on_a_slow_wire() -> None:
    s = source(FixedWire(SLOW_WIRE, measured=True))
    list(s.frames(0))
    assert s.counters.data_bytes == sum(len(d) for _, d in EXTENTS)
    assert s.counters.wire_bytes < s.counters.data_bytes - 250_000  # the text shrank
    randoms = len(EXTENTS[0][1]) + len(EXTENTS[2][1])
    assert s.counters.wire_bytes > randoms  # random data went out whole


def test_on_a_fast_wire_even_compressible_extents_go_raw() -> None:
    s = source(FixedWire(FAST_WIRE, measured=True))
    events = decode(s.frames(0))
    assert [(e.offset, e.data) for e in events if isinstance(e, cs.Data)] == EXTENTS
    assert s.counters.wire_bytes > s.counters.data_bytes  # raw: the data plus the frames


def test_the_sender_measures_the_wire_as_it_sends() -> None:
    wire = WireRate()
    list(source(wire).frames(0))
    assert wire.measured


def test_a_resumed_stream_ends_with_the_whole_streams_digest() -> None:
    whole = decode(source().frames(0))[-1]
    resume_at = EXTENTS[1][0] + len(EXTENTS[1][1])
    # From the checkpoints of the same process, and rebuilt by a fresh one (a restart).
    warm = source()
    list(warm.frames(0))
    for s in (warm, source()):
        events = decode(s.frames(resume_at))
        assert events[0] == cs.Header(cs.Content.KUBEVIRT, cs.Mode.FILESYSTEM, SIZE, resume_at)
        assert [e.offset for e in events if isinstance(e, cs.Data)] == [4 << 20]
        assert events[-1] == whole

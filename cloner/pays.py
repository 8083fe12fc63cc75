"""Whether compressing an extent pays: the time it saves on the wire against what it costs.

Compressing is worth it only when the network, not the CPU, limits the clone. Between
two nodes on a 1 Gbit/s link, zstd's fast levels (a few hundred MB/s per core) win
easily on compressible data; on loopback or a 10+ Gbit/s link, the same compression makes
the clone CPU-bound and slower, and the receiver pays for decompressing too. So, per
extent (the `zstd --adapt` idea, made explicit):

    saved = (1 - ratio) * wire            seconds per content byte no longer sent
    cost  = compress / workers + compress * INFLATE_SHARE
                                          the sender's workers, plus the receiver's inflate

and compress when `saved > cost` (and the sample shrank below WORTH at all). `ratio` and
`compress` (seconds per byte) come from compressing a sample of the extent; `wire` (seconds
per wire byte) is measured by the sender from how long the transport takes to accept what
it is given, smoothed. Until the first measurement the wire is assumed to be a 1 Gbit/s link.

Pure: the estimates are plain numbers; the sender and encoder feed and read them.
"""

from __future__ import annotations

from dataclasses import dataclass

WORTH = 0.9
"""Never compress what the sample does not shrink below this ratio (random data)."""
INFLATE_SHARE = 0.25
"""zstd inflates about four times faster than its fast levels compress."""
ASSUMED_WIRE = 8 / 1e9
"""Seconds per byte of a 1 Gbit/s link: the wire's cost until it was measured."""
SMOOTHING = 0.2
"""Weight of a new measurement in the running estimates."""


def pays(ratio: float, compress: float, wire: float, workers: int) -> bool:
    """Whether compressing content whose sample shrank to `ratio` (compressed/raw) at
    `compress` seconds per byte saves more than it costs on a wire of `wire` s/byte."""
    if not 0.0 <= ratio < WORTH:
        return False
    saved = (1.0 - ratio) * wire
    cost = compress / max(1, workers) + compress * INFLATE_SHARE
    return saved > cost


@dataclass
class WireRate:
    """The smoothed seconds per byte the transport takes (the sender's measurements)."""

    seconds_per_byte: float = ASSUMED_WIRE
    measured: bool = False

    def observe(self, seconds: float, nbytes: int) -> None:
        if nbytes <= 0 or seconds < 0:
            return
        rate = seconds / nbytes
        if not self.measured:
            self.seconds_per_byte, self.measured = rate, True
        else:
            self.seconds_per_byte += SMOOTHING * (rate - self.seconds_per_byte)

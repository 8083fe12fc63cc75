"""Pod addresses: round-robin over the cluster's /24, as the host-local IPAM plugin does.

Why not lowest-free: a freed address handed straight to the next pod meets neighbours
that still map it to the old pod's MAC (a host's ARP entry stays REACHABLE for up to
45 s), so the new pod is unreachable from the host and the Service proxy for that long.
Cycling through the range lets old entries expire first; the agent also flushes the
host's entry when it hands an address out again.
"""

from __future__ import annotations

import threading

FIRST, LAST = 2, 254  # .1 is the gateway (the host), .255 broadcast


def next_free(used: set[int], last: int, first: int = FIRST, final: int = LAST) -> int | None:
    """The first host number after `last` (wrapping) that is not in `used` (pure)."""
    span = final - first + 1
    for step in range(1, span + 1):
        n = first + (last - first + step) % span
        if n not in used:
            return n
    return None


class Ipam:
    """One node's pod addresses: host numbers ``first``..``last`` after ``prefix``."""

    def __init__(self, prefix: str, first: int = FIRST, last: int = LAST) -> None:
        self.prefix = prefix
        self.first, self.final = first, last
        self._by_uid: dict[str, int] = {}
        self._last = first - 1
        self._lock = threading.Lock()

    def allocate(self, uid: str) -> str:
        with self._lock:
            if uid not in self._by_uid:
                n = next_free(set(self._by_uid.values()), self._last, self.first, self.final)
                if n is None:
                    raise RuntimeError("pod address range exhausted")
                self._by_uid[uid] = self._last = n
            return f"{self.prefix}{self._by_uid[uid]}"

    def release(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

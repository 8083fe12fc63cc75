"""Reports an event loop that stops turning, with every thread's stack.

Why: the webhook, the readiness endpoint, lease renewal and reconciling all share one
asyncio loop, so anything that blocks it (a synchronous call, a stalled write) shows up
to users as admission timeouts and a lost lease, with nothing in the log saying why. A
daemon thread watches a heartbeat the loop stamps; when the loop has been silent for
`threshold` seconds it logs once per stall, with the stacks, so the cause is visible.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)


def stacks() -> str:
    """Every thread's current stack, main thread first (pure formatting of a snapshot)."""
    frames = sys._current_frames()
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    main = threading.main_thread().ident
    for ident, frame in sorted(frames.items(), key=lambda kv: kv[0] != main):
        stack = "".join(traceback.format_stack(frame))
        parts.append(f"thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


class StallWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, threshold: float = 3.0,
                 beat: float = 0.5) -> None:
        self.loop = loop
        self.threshold = threshold
        self.beat = beat
        self.last = time.monotonic()
        self.stalls = 0
        self._stop = threading.Event()

    def _stamp(self) -> None:
        self.last = time.monotonic()
        if not self._stop.is_set():
            self.loop.call_later(self.beat, self._stamp)

    def start(self) -> None:
        self.loop.call_soon(self._stamp)
        threading.Thread(target=self._watch, name="stall watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        stalled_since: float | None = None
        while not self._stop.wait(self.beat):
            last = self.last
            silent = time.monotonic() - last
            if silent < self.threshold:
                if stalled_since is not None:
                    log.warning("event loop running again stall_seconds=%.1f",
                                last - stalled_since)
                stalled_since = None
                continue
            if stalled_since is None:
                stalled_since = last
                self.stalls += 1
                log.warning("event loop stalled stall_seconds=%.1f\n%s", silent, stacks())

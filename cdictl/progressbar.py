"""The upload's progress bar (tqdm, in bytes), which can move back to a resume offset."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Bar:
    """A tqdm bar on stdout, as virtctl draws its bar there; off when stdout is no TTY."""

    def __init__(self, total: int, *, stream: TextIO | None = None,
                 disable: bool | None = None) -> None:
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                         file=stream or sys.stdout, disable=disable, dynamic_ncols=True,
                         miniters=1, mininterval=0.2)

    @property
    def position(self) -> int:
        return int(self._bar.n)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def restart_at(self, offset: int) -> None:
        """The next bytes sent start at `offset` (0 after a restart, N after a resume)."""
        if self._bar.n != offset:
            self._bar.reset(total=self._bar.total)
            self._bar.update(offset)

    def close(self) -> None:
        self._bar.close()

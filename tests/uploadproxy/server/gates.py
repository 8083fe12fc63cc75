"""The real file target, with gates a test holds to make the pipeline slow at one point.

`writes` blocks every `write_at` (raw streaming: the pipeline stops taking the body);
`commit` blocks the final commit (conversion "lasts": sync keepalive, async answers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from importer.targets import FileTarget, Target


class Gates:
    def __init__(self) -> None:
        self.writes = threading.Event()
        self.commit = threading.Event()
        self.writes.set()
        self.commit.set()
        self.commit_reached = threading.Event()

    def factory(self) -> Callable[[str], Target]:
        gates = self

        class GatedFileTarget(FileTarget):
            def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
                if not gates.writes.wait(60):
                    raise TimeoutError("write gate held too long")
                super().write_at(offset, data)

            def commit(
                self, image_size: int, usable: int | None, preallocate: bool = False
            ) -> None:
                gates.commit_reached.set()
                if not gates.commit.wait(60):
                    raise TimeoutError("commit gate held too long")
                super().commit(image_size, usable, preallocate)

        return GatedFileTarget

"""The real file target, with gates a test holds to make the pipeline slow at one point.

`writes` blocks every `write_at` (raw streaming: the pipeline stops taking the body);
`commit` blocks the final commit (conversion "lasts": sync keepalive, async answers);
`commit_failure`, when set, is raised by the commit once the gate opens (the volume fills
up late, after the client was answered).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from importer.errors import ImportFailure
from importer.targets import FileTarget, Target


class Gates:
    def __init__(self) -> None:
        self.writes = threading.Event()
        self.commit = threading.Event()
        self.writes.set()
        self.commit.set()
        self.commit_reached = threading.Event()
        self.commit_failure: ImportFailure | None = None

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
                if gates.commit_failure is not None:
                    raise gates.commit_failure
                super().commit(image_size, usable, preallocate)

        return GatedFileTarget

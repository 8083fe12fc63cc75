"""Choosing a target by capability: the first class whose `is_compatible` accepts the path."""

from __future__ import annotations

from collections.abc import Sequence

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.targets.base import Target
from importer.targets.block import BlockTarget
from importer.targets.file import FileTarget

TARGET_TYPES: tuple[type[Target], ...] = (BlockTarget, FileTarget)
"""Most specific first; an archive-directory target is meant to be prepended."""


def select_target(path: str, candidates: Sequence[type[Target]] = TARGET_TYPES) -> Target:
    for cls in candidates:
        if cls.is_compatible(path):
            return cls(path)
    raise ImportFailure(
        Reason.INVALID_CONFIG,
        f"no target can write to {path}: expected a regular file path or a block device",
    )

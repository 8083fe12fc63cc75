"""Where the image lands: a sparse file, a block device (and, elsewhere, an archive dir)."""

from importer.targets.base import Target
from importer.targets.block import BlockTarget
from importer.targets.file import FileTarget
from importer.targets.select import TARGET_TYPES, select_target

__all__ = ["TARGET_TYPES", "BlockTarget", "FileTarget", "Target", "select_target"]

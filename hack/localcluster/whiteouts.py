"""OCI layer whiteouts turned into overlayfs's own, so layers stack as overlay lowerdirs.

Why: an OCI layer deletes a lower file with an empty ``.wh.NAME`` entry and hides a
whole lower directory with ``.wh..wh..opq``; overlayfs spells the first as a 0/0
character device named NAME and the second as the ``trusted.overlay.opaque`` xattr
(as containerd's overlay snapshotter applies layers).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


def convert(root: Path) -> int:
    """Convert every whiteout below ``root`` in place; returns how many there were."""
    count = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if not name.startswith(PREFIX):
                continue
            path = os.path.join(dirpath, name)
            if name == OPAQUE:
                os.unlink(path)
                os.setxattr(dirpath, "trusted.overlay.opaque", b"y")
            else:
                os.unlink(path)
                os.mknod(
                    os.path.join(dirpath, name[len(PREFIX) :]),
                    0o600 | stat.S_IFCHR,
                    os.makedev(0, 0),
                )
            count += 1
    return count

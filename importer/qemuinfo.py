"""What `qemu-img info --output=json` says about an image, and whether it is safe to convert.

Pure functions of qemu-img's JSON (`importer.qemu` runs it). An image is unsafe when it
would make qemu-img open files other than itself: a backing file, an external data file,
VMDK extents elsewhere. Our driver trees keep qemu-img from following a backing file and
the sandbox denies any other file, but an image that asks for one is refused all the same,
with a reason that says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cdicontract.reasons import Reason
from importer.errors import ImportFailure


@dataclass(frozen=True)
class QemuInfo:
    """What `qemu-img info` says about an image (only the fields our decisions need)."""

    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None
    data_file: str | None
    raw: dict[str, object]


def parse_info(text: bytes) -> QemuInfo:
    """Parse `qemu-img info --output=json`; raises ValueError on anything unexpected."""
    doc: Any = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("qemu-img info output is not an object")
    fmt = doc.get("format")
    vsize = doc.get("virtual-size")
    if not isinstance(fmt, str) or not isinstance(vsize, int) or vsize < 0:
        raise ValueError("qemu-img info output lacks format or virtual-size")
    actual = doc.get("actual-size")
    backing = doc.get("full-backing-filename") or doc.get("backing-filename")
    data_file = None
    specific = doc.get("format-specific")
    if isinstance(specific, dict) and isinstance(specific.get("data"), dict):
        df = specific["data"].get("data-file")
        data_file = df if isinstance(df, str) else None
    return QemuInfo(
        format=fmt,
        virtual_size=vsize,
        actual_size=actual if isinstance(actual, int) else None,
        backing_file=backing if isinstance(backing, str) else None,
        data_file=data_file,
        raw=doc,
    )


def own_filenames(doc: dict[str, object]) -> frozenset[str]:
    """The names `qemu-img info` may give the image's own file (pure).

    qemu 7.2 reports a plain `filename` for our driver trees (the path, or
    "nbd+unix://?socket=..."), the same name it gives a VMDK's extent that lives in the
    image itself. Should it report the tree as "json:{...}" (options it cannot express as
    a plain name), the protocol node's own filename is the extent's name; an NBD node has
    none there, so such an extent counts as outside (refused: failing closed).
    """
    own = doc.get("filename")
    if not isinstance(own, str):
        return frozenset()
    names = {own}
    if own.startswith("json:"):
        try:
            tree = json.loads(own[len("json:") :])
        except ValueError:
            tree = None
        node = tree.get("file") if isinstance(tree, dict) else None
        if isinstance(node, dict) and isinstance(node.get("filename"), str):
            names.add(node["filename"])
    return frozenset(names)


def unsafe_reason(qi: QemuInfo) -> str | None:
    """Why an image would make qemu-img open files other than itself, or None if it won't."""
    if qi.backing_file:
        return "image has a backing file"
    if qi.data_file:
        return "image has an external data file"
    specific = qi.raw.get("format-specific")
    if isinstance(specific, dict) and isinstance(specific.get("data"), dict):
        extents = specific["data"].get("extents")
        if isinstance(extents, list):
            own = own_filenames(qi.raw)
            for extent in extents:
                name = extent.get("filename") if isinstance(extent, dict) else None
                if name not in own:
                    return "image has an extent outside itself"
    return None


def check_safe(qi: QemuInfo) -> None:
    """Refuse images that reference other files (backing chains, data files, extents).

    The file names are not echoed: they come from the image and could be anything.
    """
    why = unsafe_reason(qi)
    if why is not None:
        raise ImportFailure(Reason.UNSAFE_IMAGE, f"refusing {qi.format} image: {why}")


__all__ = ["QemuInfo", "check_safe", "own_filenames", "parse_info", "unsafe_reason"]

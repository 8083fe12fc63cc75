"""The block driver tree qemu-img opens: the format over an explicit protocol, no backing.

A plain filename lets qemu-img pick the protocol from the name and open whatever the
image header references. A `json:` tree names every node instead:

    {"driver": "qcow2", "backing": null,
     "file": {"driver": "nbd", "server": {"type": "unix", "path": "/w/nbd-x/sock"}}}

- `"backing": null` makes qemu open no backing file whatever the header says; qemu-img
  info still reports the header's backing file name, so `qemu.check_safe` still sees it.
  It is given only to the drivers that have backing files (qcow2, and vmdk for its
  parentFileNameHint): qemu 7.2 strips a null `backing` before any driver sees it, but
  to any other driver a backing node is "Driver doesn't support backing files".
- `file` is the protocol node, `file` (a local path) or `nbd` (a Unix socket): never
  chosen from the name, so a path such as "nbd:..." or "json:..." is only ever a path.
- Nothing else is given: the other format drivers (raw, vpc, vhdx, vdi) have no backing
  and follow no reference (qemu refuses a differencing VHDX or VDI and reads a
  differencing VHD without its parent; our header inspection refuses all three). What a
  tree cannot null (a qcow2 external data file: an explicit `data-file` is an error for
  every image without one; VMDK extents) is refused by `qemu.check_safe` from
  `qemu-img info` and, should that be bypassed, denied by the sandbox (`importer.sandbox`).

All of this is verified against qemu-img 7.2 in tests/importer/test_qemu_driver_tree.py.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

BACKING_FORMATS = frozenset({"qcow2", "vmdk"})
"""Drivers with `supports_backing` in qemu 7.2 among the formats we convert."""

NBD_UNIX_SCHEME = "nbd+unix"
_OTHER_NBD = re.compile(r"nbds?(\+[a-z]+)?://")


def nbd_unix_uri(socket_path: str) -> str:
    """The NBD URI for the default export on Unix socket `socket_path`."""
    return f"{NBD_UNIX_SCHEME}:///?socket={quote(socket_path, safe='/')}"


def nbd_unix_socket(uri: str) -> str:
    """The socket path of an `nbd+unix:///?socket=PATH` URI (the default export only).

    Raises ValueError for anything else: TCP or TLS NBD, an export name, other query
    keys. We only ever serve a local nbdkit on a Unix socket.
    """
    parts = urlsplit(uri)
    if parts.scheme != NBD_UNIX_SCHEME or parts.netloc or parts.path not in ("", "/"):
        raise ValueError("not an nbd+unix URI of the default export")
    key, sep, value = parts.query.partition("=")
    if key != "socket" or not sep or "&" in value or not value:
        raise ValueError("an nbd+unix URI needs exactly one socket= parameter")
    # qemu's own URI parser percent-decodes but does not turn '+' into a space.
    return unquote(value)


def protocol_node(source: str) -> dict[str, Any]:
    """The protocol layer for `source`: an NBD Unix socket, or a local file."""
    if source.startswith(f"{NBD_UNIX_SCHEME}:"):
        return {"driver": "nbd", "server": {"type": "unix", "path": nbd_unix_socket(source)}}
    if _OTHER_NBD.match(source):
        raise ValueError("only nbd+unix sources are supported")
    # Anything else is a local path, even "nbd:host:port": the file driver never parses it.
    return {"driver": "file", "filename": os.path.abspath(source)}


def image_tree(source: str, fmt: str) -> dict[str, Any]:
    """The driver tree reading `source` as `fmt` (a pure function but for abspath)."""
    tree: dict[str, Any] = {"driver": fmt}
    if fmt in BACKING_FORMATS:
        tree["backing"] = None
    tree["file"] = protocol_node(source)
    return tree


def json_filename(tree: dict[str, Any]) -> str:
    """The tree as a qemu `json:` pseudo-filename (json.dumps quotes every path)."""
    return "json:" + json.dumps(tree, separators=(",", ":"))


def image_filename(source: str, fmt: str) -> str:
    """What qemu-img is given for `source` read as `fmt`."""
    return json_filename(image_tree(source, fmt))


__all__ = [
    "BACKING_FORMATS",
    "image_filename",
    "image_tree",
    "json_filename",
    "nbd_unix_socket",
    "nbd_unix_uri",
    "protocol_node",
]

"""Refusals decided from the head of the stream, before the rest of the body is read.

An importer would find the same problems later (full inspection, the size limit while
writing); an upload client is still sending then, and deserves the answer now. Only
conclusions the head fully supports are drawn: a header that needs bytes beyond the head
is left to the full inspection.
"""

from __future__ import annotations

from cdicontract.reasons import Reason
from importer import formats
from importer.errors import ImportFailure
from importer.formats import vhd

# Refusals a header makes on its own fields; anything else may just be the head's end.
_CONCLUSIVE = frozenset({Reason.IMAGE_TOO_LARGE, Reason.UNSAFE_IMAGE, Reason.UNSUPPORTED_FORMAT})


def check_head(
    fmt: formats.DiskFormat, head: bytes, *, usable: int | None, declared_size: int | None
) -> None:
    """Raise ImportFailure if the image whose first bytes are `head` cannot succeed.

    `declared_size` is the length of the (uncompressed) body when the source announced it
    (Content-Length): a raw body longer than the usable size cannot fit, save a fixed
    VHD's 512-byte footer.
    """
    if fmt is formats.DiskFormat.RAW:
        fixed_vhd_slack = vhd.FOOTER_SIZE
        if usable is not None and declared_size is not None and (
            declared_size > usable + fixed_vhd_slack
        ):
            formats.ensure_fits(declared_size, usable)
        return

    def read_at(offset: int, length: int) -> bytes:
        return head[offset : offset + length]

    try:
        image = formats.inspect(fmt, read_at, None)
    except ImportFailure as e:
        if e.reason in _CONCLUSIVE:
            raise
        return
    if usable is not None and image.virtual_size is not None:
        formats.ensure_fits(image.virtual_size, usable)

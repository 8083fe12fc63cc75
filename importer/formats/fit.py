"""The size check made before anything is written: does the image fit the volume?"""

from __future__ import annotations

from cdicontract.reasons import Reason
from importer.errors import ImportFailure

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(size: int) -> str:
    """`size` in the largest binary unit that keeps it >= 1, with up to two decimals."""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.2f}".rstrip("0").rstrip(".") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ensure_fits(virtual_size: int, usable_size: int) -> None:
    """Refuse an image whose virtual size exceeds the volume's usable size.

    The message keeps CDI's phrase (`DataVolume too small to contain image`), which users
    and tools search for, and gives both sizes exactly so the shortfall can be computed.
    """
    if virtual_size <= usable_size:
        return
    raise ImportFailure(
        Reason.IMAGE_TOO_LARGE,
        "DataVolume too small to contain image: "
        f"virtual size {virtual_size} bytes ({human_size(virtual_size)}) > "
        f"usable size {usable_size} bytes ({human_size(usable_size)}) "
        "(usable size is the volume's capacity minus filesystem overhead; "
        "request a larger volume)",
    )

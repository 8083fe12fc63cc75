"""Kubernetes resource quantities (`10Gi`, `1.5G`, `500M`, `1e9`) to and from bytes."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

MIB = 1 << 20

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50,
           "Ei": 1 << 60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6),
            "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}
_RE = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d+)?$")


class QuantityError(ValueError):
    pass


def parse(text: str | int) -> int:
    """Bytes in a quantity, rounded up (a fractional byte still needs a byte)."""
    if isinstance(text, int):
        return text
    m = _RE.match(text.strip())
    if not m:
        raise QuantityError(f"invalid quantity {text!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:
        raise QuantityError(f"invalid quantity {text!r}") from exc
    suffix = m.group(2) or ""
    if suffix in _BINARY:
        value = number * _BINARY[suffix]
    elif suffix in _DECIMAL:
        value = number * _DECIMAL[suffix]
    else:
        value = number * (Decimal(10) ** int(suffix[1:]))
    return math.ceil(value)


def round_up(n: int, unit: int = MIB) -> int:
    return -(-n // unit) * unit


def format_bytes(n: int) -> str:
    """The shortest exact binary-suffixed form (`10Gi`), or plain bytes."""
    for suffix, unit in reversed(_BINARY.items()):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def with_overhead(requested: int, overhead: float) -> int:
    """The claim size whose usable part (after filesystem overhead) still holds `requested`.

    CDI divides by (1 - overhead); the importer computes usable = size / (1 + overhead)
    rounded down to 1 MiB, and requested/(1-o)/(1+o) = requested/(1-o^2) >= requested, so
    after rounding the claim up to 1 MiB the image always fits.
    """
    if overhead <= 0:
        return requested
    return round_up(math.ceil(requested / (1 - overhead)))

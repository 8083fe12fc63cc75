"""Sizes both sides compute: Kubernetes quantities and CDI's filesystem-overhead rules.

The controller sizes the claim (`required_size`) and the importer sizes the image it
writes into it (`usable_size`); they must agree on what a quantity means and on what the
overhead takes, or an image that "should fit" is refused. So both rules live here, once.

Errors are a neutral `SizeError` (a ValueError); each side translates it at its edge
(the importer into ImportFailure(INVALID_CONFIG), the controller into a claim error or an
admission message).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MIB = 1 << 20
"""CDI's `DefaultAlignBlockSize`: usable and required sizes are whole MiB."""
DEFAULT_OVERHEAD = "0.06"
"""CDI's default filesystem overhead for Filesystem-mode volumes, as CDIConfig spells it."""

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# Kubernetes' quantity grammar: <signed number><suffix>, suffix binary SI, decimal SI or
# a decimal exponent (e/E followed by a signed integer).
_QUANTITY = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?\d+)|(?P<dec>[numkMGTPE]?))"
)
_MAX_EXPONENT = 30  # 1e30 bytes is far beyond any volume; bounds the arithmetic


class SizeError(ValueError):
    """A quantity, size or overhead that is not valid; the message says which and why."""


def parse_quantity(text: str | int) -> int:
    """A Kubernetes quantity in bytes ("10Gi", "1G", "1.5Gi", "1e3", "123"), rounded up.

    Rounding up matches `resource.Quantity.Value()` (a fractional byte still needs a
    byte); negative sizes are refused. A JSON number is taken as bytes.
    """
    if isinstance(text, int):
        if text < 0:
            raise SizeError(f"invalid size {text}: negative")
        return text
    m = _QUANTITY.fullmatch(text.strip())
    if m is None:
        raise SizeError(f"invalid size {text[:64]!r}: not a quantity")
    number = Fraction(Decimal(m["num"]))
    if m["bin"]:
        value = number * _BINARY[m["bin"]]
    elif m["exp"] is not None:
        exponent = int(m["exp"])
        if abs(exponent) > _MAX_EXPONENT:
            raise SizeError(f"invalid size {text[:64]!r}: out of range")
        value = number * Fraction(10) ** exponent
    else:
        value = number * _DECIMAL[m["dec"]]
    if value < 0:
        raise SizeError(f"invalid size {text[:64]!r}: negative")
    return math.ceil(value)


def format_quantity(n: int) -> str:
    """The shortest exact binary-suffixed form (`10Gi`), or plain bytes."""
    for suffix, unit in reversed(_BINARY.items()):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def round_up(n: int, unit: int = MIB) -> int:
    return -(-n // unit) * unit


def parse_overhead(text: str) -> float:
    """A filesystem overhead ("0.06") in [0, 1)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not Decimal(0) <= value < Decimal(1):
        raise SizeError(
            f"invalid filesystem overhead {text[:32]!r}: expected a number in [0, 1)"
        )
    return float(value)


def usable_size(available: int, overhead: float) -> int:
    """The importer's rule, CDI's `GetUsableSpace`: ceil((1 - overhead) x available),
    rounded down to 1 MiB (`DefaultAlignBlockSize`).

    The overhead is taken as the decimal the user wrote (0.06, not its binary float
    approximation), so the result does not depend on float rounding.
    """
    if available < 0:
        raise SizeError(f"invalid available size {available}")
    ratio = _exact(overhead)
    usable = math.ceil((1 - ratio) * available)
    return usable - usable % MIB


def required_size(requested: int, overhead: float) -> int:
    """The controller's rule: the claim size whose usable part still holds `requested`.

    CDI divides by (1 - overhead) and `usable_size` multiplies by it, so the requested size
    stays usable. Unlike CDI's `GetRequiredSpace` (byte-exact ceil(roundUp(requested, 1 MiB)
    / (1 - overhead))) the claim is rounded up to a whole MiB after the division, as the
    controller has always done; the usable part is the same or larger.
    """
    if overhead <= 0:
        return requested
    return round_up(math.ceil(requested / (1 - overhead)))


def _exact(overhead: float) -> Fraction:
    if not math.isfinite(overhead) or not 0 <= overhead < 1:
        raise SizeError(f"invalid filesystem overhead {overhead}: expected [0, 1)")
    return Fraction(Decimal(repr(overhead)))

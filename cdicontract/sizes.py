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
"""CDI's `DefaultAlignBlockSize`: usable sizes are whole MiB, requests are aligned to it
before the overhead is added."""
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
    rounded down to 1 MiB (`DefaultAlignBlockSize`), so qemu-img's own rounding up stays
    inside the volume.

    Computed in float64 exactly as CDI's Go code does (`math.Ceil((1 - o) *
    float64(available))`; Python's float is the same IEEE double and the same operations
    round the same way), so an image CDI accepts is accepted here and one it refuses is
    refused, to the byte.
    """
    if available < 0:
        raise SizeError(f"invalid available size {available}")
    _check(overhead)
    usable = math.ceil((1.0 - overhead) * float(available))
    return usable - usable % MIB


def required_size(requested: int, overhead: float) -> int:
    """The controller's rule, CDI's `GetRequiredSpace` for a Filesystem-mode `storage`
    claim: ceil(roundUp(requested, 1 MiB) / (1 - overhead)) bytes, byte-exact (not rounded
    to a MiB afterwards). Block-mode claims are not inflated: the caller does not call this.

    float64 as CDI computes it (see `usable_size`), so the PVC request is CDI's figure to
    the byte. The pair keeps its promise, usable_size(required_size(n, o), o) >= n: the
    request is rounded up to a MiB before the division, the division is rounded up, and
    `usable_size` rounds the product up before it rounds down to the same MiB. Only past
    2**51 bytes (2 PiB) can float64's rounding leave CDI's figure a few bytes short; there
    the figure is raised by as few float steps as restore the promise (CDI would refuse
    the image).

    1 - overhead is the team's contract (the overhead is the share of the volume the file
    system takes, as CDIConfig documents it, and as CDI computed it before v1.63, PR #3779);
    CDI since then multiplies by 1 + overhead instead, a slightly smaller claim.
    """
    if requested < 0:
        raise SizeError(f"invalid requested size {requested}")
    _check(overhead)
    aligned = round_up(requested)
    required = math.ceil(float(aligned) / (1.0 - overhead))
    while usable_size(required, overhead) < aligned:
        required += max(1, int(math.ulp(float(required))))
    return required


def scratch_size(claim: int, overhead: float, scratch_overhead: float) -> int:
    """CDI's scratch claim for an import into a claim of `claim` bytes (`overhead` is 0 for
    a Block claim): the target's usable size, inflated by the scratch class's overhead,
    rounded up to a MiB (`createScratchPersistentVolumeClaim`), so the scratch holds
    whatever fits the target.
    """
    return round_up(required_size(usable_size(claim, overhead), scratch_overhead))


def _check(overhead: float) -> None:
    if not math.isfinite(overhead) or not 0 <= overhead < 1:
        raise SizeError(f"invalid filesystem overhead {overhead}: expected [0, 1)")

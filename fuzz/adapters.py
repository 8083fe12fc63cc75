"""Calls into entry points whose signatures are known to be in flux, kept in one place."""

from __future__ import annotations

import inspect

from importer import formats


def vhd_fixed_payload(tail: bytes, total_length: int) -> int | None:
    """`formats.vhd_fixed_payload` over the last 512 bytes of a stream of `total_length`.

    It takes only the tail today; its owner plans to pass the stream's total length too
    (so a footer can be checked against it). Whichever shape it has, call it that way.
    """
    fn = formats.vhd_fixed_payload
    if len(inspect.signature(fn).parameters) >= 2:
        return fn(tail, total_length)  # type: ignore[call-arg,unused-ignore]
    return fn(tail)

"""Calls into parser entry points, kept in one place so a signature change touches one file."""

from __future__ import annotations

from importer import formats


def vhd_fixed_payload(tail: bytes, total_length: int) -> int | None:
    """`formats.vhd_fixed_payload` over the last 512 bytes of a stream of `total_length`."""
    return formats.vhd_fixed_payload(tail, total_length)

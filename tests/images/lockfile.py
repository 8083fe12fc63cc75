"""Reads a pip-compile lock (requirements/*.txt): pins, hashes and who asked for each."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def read(path: Path) -> dict[str, Pin]:
    """Every pinned package by canonical name, with its hashes and `# via` lines."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = Pin(canonicalize_name(match[1]), match[2])
            pins[current.name] = current
        elif current is not None and line.strip().startswith("--hash="):
            current.hashes.append(line.strip().removeprefix("--hash=").rstrip(" \\"))
        elif current is not None and line.strip().startswith("#"):
            text = line.strip().lstrip("#").strip()
            text = text.removeprefix("via").strip()
            if text:
                current.via.append(text)
    return pins

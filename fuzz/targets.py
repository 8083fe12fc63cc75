"""The target registry: name -> module, imported only when asked for (each pulls its parser)."""

from __future__ import annotations

import importlib

from fuzz.harness import Target

NAMES = ("formats", "archive", "layer", "manifest", "text", "compression")


def load(name: str) -> Target:
    if name not in NAMES:
        raise KeyError(f"unknown fuzz target {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"fuzz.{name}")
    target: Target = module.TARGET
    return target


def load_all() -> list[Target]:
    return [load(name) for name in NAMES]

"""Inputs in fuzz/crashes/TARGET/ crash a parser someone else owns; each must still crash.

They are kept until the parser is fixed. When one stops crashing this test fails (strict
xfail): the fix landed, so move the file to fuzz/regressions/TARGET/ with a name that says
what it was, and it guards the fix from then on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import targets
from fuzz.harness import Target

CASES = [
    pytest.param(target, path, id=f"{target.name}/{path.name}")
    for target in targets.load_all()
    if target.crashes.is_dir()
    for path in sorted(target.crashes.iterdir())
    if path.is_file() and path.name.startswith("crash-")
]


@pytest.mark.xfail(strict=True, raises=Exception, reason="known crash, owned by the parser")
@pytest.mark.parametrize(("target", "path"), CASES)
def test_known_crash_reproduces(target: Target, path: Path) -> None:
    target.one_input(path.read_bytes())

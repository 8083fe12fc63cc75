"""The images install requirements/runtime.txt, nothing else: it must lock exactly the
runtime dependencies pyproject.toml declares, each with its hashes, and nothing test-only.
(hack/lock-deps regenerates it.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.images import lockfile

ROOT = Path(__file__).resolve().parents[2]
DIRECT = "cdi-py (pyproject.toml)"


def _pyproject() -> dict[str, Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def test_every_runtime_dependency_is_locked_within_its_range() -> None:
    pins = lockfile.read(ROOT / "requirements/runtime.txt")
    for name, requirement in _pyproject().items():
        assert name in pins, f"{name} is a runtime dependency but not in the lock: hack/lock-deps"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{name}=={pins[name].version} is outside pyproject's {requirement.specifier}"
        )


def test_the_lock_asks_for_nothing_pyproject_does_not() -> None:
    pins = lockfile.read(ROOT / "requirements/runtime.txt")
    direct = {name for name, pin in pins.items() if any(DIRECT in v for v in pin.via)}
    assert direct == set(_pyproject()), (
        "requirements/runtime.txt was compiled from other runtime dependencies than "
        "pyproject.toml's: run hack/lock-deps"
    )


def test_every_pin_has_hashes() -> None:
    for path in ("requirements/runtime.txt", "requirements/testutil.txt"):
        pins = lockfile.read(ROOT / path)
        assert pins, path
        unhashed = [name for name, pin in pins.items() if not pin.hashes]
        assert not unhashed, f"{path}: no --hash for {unhashed}"


def test_no_test_or_tool_only_package_is_a_runtime_dependency() -> None:
    pins = lockfile.read(ROOT / "requirements/runtime.txt")
    tool_only = {"pytest", "moto", "mypy", "ruff", "atheris", "import-linter", "kubernetes",
                 "sh", "pip", "setuptools", "wheel", "pytest-xdist", "bcrypt"}
    assert not tool_only & set(pins)

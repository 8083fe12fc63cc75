"""The import-linter contract that keeps the runtime apart lists every domain module."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_domain_module_is_forbidden_to_the_runtime():
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in doc["tool"]["importlinter"]["contracts"]
                    if c.get("source_modules") == ["controller.runtime"])
    domain = {f"controller.{p.stem}" for p in (ROOT / "controller").iterdir()
              if p.stem not in ("__init__", "runtime", "__pycache__")
              and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert domain == set(contract["forbidden_modules"])

"""The real `virtctl` (KubeVirt v1.7.0), built from source by hack/build-virtctl.

Fixture `virtctl` (session): the binary's path. The build is a no-op once cached
(`$CDI_PY_CACHE`, default ~/.cache/cdi-py/virtctl-<version>/virtctl); a cold build takes
long, so hack/test runs it before pytest. The fixture skips only when this machine has no
Go toolchain to build with; a build that fails is a test failure, with its error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-virtctl"
GO = Path("/usr/local/go/bin/go")


@pytest.fixture(scope="session")
def virtctl() -> Path:
    if not GO.exists() and shutil.which("go") is None:
        pytest.skip("no Go toolchain (/usr/local/go/bin/go) to build virtctl with")
    where = subprocess.run([str(SCRIPT), "--print-path"], check=True, capture_output=True,
                           text=True).stdout.strip()
    built = subprocess.run([str(SCRIPT)], check=False, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"hack/build-virtctl failed ({built.returncode}):\n{built.stderr[-4000:]}")
    path = Path(where)
    if not path.is_file():
        pytest.fail(f"hack/build-virtctl succeeded but {path} is missing")
    return path

"""Each target under libFuzzer for FUZZ_SECONDS (default 8): no crash, timeout or OOM.

Runs from the committed corpus and regressions; new inputs go to a temporary directory,
never into the repository (hack/fuzz does that, for longer). A failure prints the
reproducer's path and the end of libFuzzer's report; replay it with
`python3 -m fuzz TARGET PATH`. FUZZ_SECONDS=0 skips these.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import targets
from fuzz.harness import CORPUS_DIR, REPO_ROOT

FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "8"))
REGRESSIONS = CORPUS_DIR.parent / "regressions"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(FUZZ_SECONDS <= 0, reason="FUZZ_SECONDS=0"),
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris missing"),
]


@pytest.mark.parametrize("name", targets.NAMES)
def test_target_survives_bounded_fuzzing(name: str, tmp_path: Path) -> None:
    new, artifacts = tmp_path / "new", tmp_path / "artifacts"
    new.mkdir()
    artifacts.mkdir()
    seeds = [str(d) for d in (CORPUS_DIR / name, REGRESSIONS / name) if d.is_dir()]
    command = [
        sys.executable, "-m", "fuzz", name,
        f"-max_total_time={FUZZ_SECONDS}", "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/", str(new), *seeds,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=FUZZ_SECONDS * 5 + 120, check=False,
    )  # fmt: skip
    found = sorted(str(p) for p in artifacts.iterdir())
    report = "\n".join(done.stderr.splitlines()[-60:])
    assert done.returncode == 0 and not found, (
        f"fuzz target {name} failed (exit {done.returncode}); reproducer(s): {found}\n{report}"
    )
    assert "DONE" in done.stderr or "Done" in done.stderr, report

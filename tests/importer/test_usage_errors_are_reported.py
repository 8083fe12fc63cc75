"""A configuration error (bad flags, bad environment) writes its report where the kubelet
reads it, so the controller fails the DataVolume instead of restarting the pod forever.

The real program runs in a bwrap sandbox whose /dev/termination-log is a file of ours, as
in a pod (no IMPORTER_TERMINATION_LOG, no --termination-log: only the default path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bwrap is not installed")


def run_in_pod(
    tmp_path: Path, args: list[str], env: dict[str, str] | None = None
) -> tuple[int, str, dict[str, object] | None]:
    report = tmp_path / "termination-log"
    report.write_text("")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    environ.update(env or {})
    proc = subprocess.run(
        [BWRAP or "bwrap", "--dev-bind", "/", "/", "--bind", str(report), "/dev/termination-log",
         sys.executable, "-m", "importer.cli", *args],
        env=environ, capture_output=True, text=True, timeout=60, check=False,
    )
    text = report.read_text()
    return proc.returncode, proc.stderr, json.loads(text) if text else None


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--dest", "/tmp/x", "--bogus", "s3cr3t-value"], {}, "unrecognized arguments: --bogus"),
        (["--dest", "/tmp/x", "--endpoint", "h"], {"IMPORTER_SOURCE": "imageio"},
         "unsupported source"),
        (["--dest", "/tmp/x", "--endpoint", "h"], {"IMPORTER_IMAGE_SIZE": "ten"}, "invalid size"),
        (["--dest", "/tmp/x", "--endpoint", "h", "--stall-timeout", "soon"], {},
         "bad command line"),
    ],
    ids=["unknown-flag", "unknown-source", "bad-size-env", "bad-flag-value"],
)
def test_usage_error_reaches_the_default_termination_path(tmp_path, args, env, needle) -> None:
    rc, stderr, report = run_in_pod(tmp_path, args, env)
    assert rc == 2, stderr
    assert report is not None, stderr
    assert report["reason"] == "InvalidConfig"
    assert needle in str(report["message"])
    assert "s3cr3t-value" not in json.dumps(report) + stderr


def test_usage_error_goes_where_the_command_line_says(tmp_path) -> None:
    elsewhere = tmp_path / "mine.json"
    rc, _, default = run_in_pod(
        tmp_path, ["--termination-log", str(elsewhere), "--dest", "/tmp/x", "--nope"]
    )
    assert rc == 2
    assert default is None
    assert json.loads(elsewhere.read_text())["reason"] == "InvalidConfig"


def test_help_is_not_a_failure(tmp_path) -> None:
    rc, stderr, report = run_in_pod(tmp_path, ["--help"])
    assert rc == 0, stderr
    assert report is None

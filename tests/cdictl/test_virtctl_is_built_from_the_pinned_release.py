"""hack/build-virtctl: the real virtctl of the release hack/virtctl/go.mod pins, cached."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_binary_is_the_pinned_release(virtctl: Path) -> None:
    pinned = re.search(r"^require kubevirt\.io/kubevirt (v\S+)$",
                       (ROOT / "hack/virtctl/go.mod").read_text(), re.M)
    assert pinned is not None
    out = subprocess.run([str(virtctl), "version", "--client"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert f'GitVersion:"{pinned.group(1)}"' in out
    assert virtctl.parent.name == f"virtctl-{pinned.group(1)}"
    help_text = subprocess.run([str(virtctl), "image-upload", "--help"], capture_output=True,
                               text=True, check=True, timeout=60).stdout
    assert "--uploadproxy-url" in help_text


def test_a_second_build_is_a_no_op(virtctl: Path) -> None:
    before = virtctl.stat().st_mtime_ns
    start = time.monotonic()
    subprocess.run([str(ROOT / "hack/build-virtctl")], check=True, timeout=60)
    assert time.monotonic() - start < 10
    assert virtctl.stat().st_mtime_ns == before

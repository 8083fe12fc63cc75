"""hack/build-control-plane is a fast no-op once the binaries are cached."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

HACK = Path(__file__).resolve().parents[2] / "hack"


def test_cached_build_is_a_fast_no_op():
    started = time.monotonic()
    subprocess.run([str(HACK / "build-control-plane")], check=True, timeout=60)
    assert time.monotonic() - started < 5
    dirs = subprocess.run(
        [str(HACK / "build-control-plane"), "--print-dirs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    k8s, etcd = map(Path, dirs)
    assert k8s.name == "k8s-v1.37.2" and etcd.name == "etcd-v3.7.0"
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        assert (k8s / binary).stat().st_mode & 0o111
    assert (etcd / "etcd").stat().st_mode & 0o111

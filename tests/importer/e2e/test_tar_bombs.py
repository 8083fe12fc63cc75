"""Tar bombs through the real `cdi-importer`: ArchiveRefused with bounded memory, nothing left.

The importer runs under an address-space limit in a wrapper interpreter whose only child
it is, so the wrapper's RUSAGE_CHILDREN is the importer's own peak RSS. Without bounds the
1 GiB name below is an out-of-memory kill (or, under the limit, a MemoryError reported as
InternalError), and a million members cost tarfile's member list hundreds of MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import tarbombs
from tests.importer.e2e.conftest import IMPORTER, importer_env
from tests.peers.registry import OciLayout, Registry

MiB = 1 << 20
ADDRESS_SPACE = 1 << 30
# Measured: a successful import of a small archive peaks at ~35 MiB RSS, the bombs below at
# 36 to 40 MiB (before the bounds: 414 MiB for the million members, a MemoryError at the
# 1 GiB limit for the long name). The margin covers a bounded header (1 MiB) held a few
# times over while decoded, and other builds of the interpreter.
MAX_RSS = 64 * MiB

WRAPPER = r"""
import json, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
rc = subprocess.call(sys.argv[2:], preexec_fn=cap)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": rc, "max_rss": rss}))
"""


@dataclass
class Measured:
    returncode: int
    max_rss: int
    report: dict[str, object]
    stderr: str


def run_measured(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Measured:
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"report-{os.urandom(6).hex()}.json"
    cmd = [sys.executable, "-c", WRAPPER, str(ADDRESS_SPACE), *IMPORTER]
    proc = subprocess.run(
        [*cmd, "--termination-log", str(report), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=importer_env(env),
        check=False,
    )
    doc = json.loads(report.read_text()) if report.exists() else {}
    report.unlink(missing_ok=True)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measured(outcome["rc"], outcome["max_rss"], doc, proc.stderr)


def _gz(bomb: Callable[[], Iterator[bytes]], path: Path, level: int = 6) -> Path:
    path.write_bytes(tarbombs.gzipped(bomb(), level))
    return path


BOMBS = {
    "pax-long-name-1GiB": (lambda: tarbombs.pax_long_name(1 << 30), 1, "pax extended header"),
    "gnu-long-link-50MiB": (
        lambda: tarbombs.gnu_long_name(50 * MiB, b"K"),
        6,
        "GNU long link header",
    ),
    "a-million-and-one-members": (
        lambda: tarbombs.dot_entries(1_000_001),
        6,
        "more than 1000000 members",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(("bomb", "level", "says"), BOMBS.values(), ids=BOMBS.keys())
def test_archive_bomb_is_refused_with_bounded_memory_and_leaves_nothing(
    nginx,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    bomb: Callable[[], Iterator[bytes]],
    level: int,
    says: str,
) -> None:
    gz = _gz(bomb, tmp_path / "bomb.tar.gz", level)
    assert gz.stat().st_size < 5 * MiB
    name = nginx.publish(gz, f"bombs/{tmp_path.name}.tar.gz")
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "lost+found").mkdir()
    r = run_measured(
        "--endpoint", f"{nginx.http_url}/{name}", "--content-type", "archive", "--dest", str(dest)
    )
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.report["reason"] == "ArchiveRefused"
    assert says in str(r.report["message"])
    assert r.max_rss < MAX_RSS, f"peak RSS {r.max_rss >> 20} MiB"
    assert os.listdir(dest) == ["lost+found"]
    print(f"{gz.stat().st_size} bytes of gzip: refused, peak RSS {r.max_rss >> 20} MiB")


def test_a_small_archive_imports_under_the_same_limit(nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The control: the limits above leave room for a real import."""
    gz = _gz(lambda: tarbombs.empty_files(100), tmp_path / "fine.tar.gz")
    name = nginx.publish(gz, f"bombs/{tmp_path.name}-fine.tar.gz")
    dest = tmp_path / "data"
    dest.mkdir()
    r = run_measured(
        "--endpoint", f"{nginx.http_url}/{name}", "--content-type", "archive", "--dest", str(dest)
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(os.listdir(dest)) == 100
    assert r.max_rss < MAX_RSS
    print(f"small archive imported, peak RSS {r.max_rss >> 20} MiB")


@pytest.mark.slow
def test_a_layer_of_more_members_than_the_layer_cap_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "layout")
    flood = tarbombs.joined(tarbombs.dot_entries(100_001))
    layout.tag(layout.image([flood], "gzip"), "v1")
    url = registry.push(layout, "v1", "bombs/flood")
    dest = tmp_path / "disk.img"
    r = run_measured(
        "--source",
        "registry",
        "--endpoint",
        url,
        "--dest",
        str(dest),
        env={"IMPORTER_INSECURE_REGISTRIES": registry.host},
    )
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.report["reason"] == "ArchiveRefused"
    assert "more than 100000 members" in str(r.report["message"])
    assert r.max_rss < MAX_RSS
    assert list(tmp_path.iterdir()) == [tmp_path / "layout"]
    print(f"layer flood refused, peak RSS {r.max_rss >> 20} MiB")

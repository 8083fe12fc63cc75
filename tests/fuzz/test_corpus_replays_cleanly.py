"""Every committed fuzz input replays through its target in-process without a crash.

The corpus holds the inputs that reached new code and fuzz/regressions/ the ones that once
crashed a parser: together a fast, deterministic regression suite for the parsers. A
parser change that makes one of them raise anything but its documented failure fails
here, naming the file; `python3 -m fuzz TARGET FILE` replays it under the fuzzer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import targets
from fuzz.harness import Target

TARGETS = targets.load_all()


def _inputs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.is_file()) if directory.is_dir() else []


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_corpus_and_regressions_replay_without_a_crash(target: Target) -> None:
    corpus = _inputs(target.corpus)
    assert corpus, f"{target.corpus} is empty: run hack/fuzz {target.name}"
    failures = []
    for path in corpus + _inputs(target.corpus.parent.parent / "regressions" / target.name):
        try:
            target.one_input(path.read_bytes())
        except Exception as exc:
            failures.append(f"{path}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)


def test_every_target_has_a_corpus_directory() -> None:
    names = {p.name for p in Path(TARGETS[0].corpus).parent.iterdir() if p.is_dir()}
    assert names == set(targets.NAMES)

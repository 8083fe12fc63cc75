"""What every target shares: the invariant, selective instrumentation, and the libFuzzer run.

Targets only touch the parsers' public entry points, so their owners can change the
internals without breaking a harness. atheris is imported lazily: replaying the corpus in
the ordinary test suite needs no fuzzer.
"""

from __future__ import annotations

import gc
import os
import shlex
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
REPO_ROOT = FUZZ_DIR.parent
CORPUS_DIR = FUZZ_DIR / "corpus"
CRASHES_DIR = FUZZ_DIR / "crashes"
DICTS_DIR = FUZZ_DIR / "dicts"

RSS_LIMIT_MB = 1024
"""The importer pod's limit is 600 MB of which Python itself takes ~40: twice that is a leak."""
TIMEOUT_S = 10
"""Per input. Every target parses headers or small streams: seconds mean a hang."""

NOT_INSTRUMENTED = ("importer.formats.crc32c",)
"""A byte loop with no branches: instrumenting it only slows every VHDX input down."""

Mutator = Callable[[bytes, int, int], bytes]


class InvariantBroken(AssertionError):
    """A parser answered, but its answer breaks what its docstring promises."""


def require(condition: bool, message: str) -> None:
    """`assert` that survives `python -O`: libFuzzer must see every broken promise."""
    if not condition:
        raise InvariantBroken(message)


@dataclass(frozen=True)
class Target:
    name: str
    one_input: Callable[[bytes], None]
    instrument: tuple[str, ...]
    """Module-name prefixes whose functions get coverage instrumentation."""
    max_len: int
    mutator: Mutator | None = None
    """libFuzzer custom mutator, e.g. one that repairs checksums so mutations go deeper."""
    hooks: frozenset[str] = field(default_factory=frozenset)
    """atheris hooks ("RegEx", "str") that turn string comparisons into fuzzer hints."""

    @property
    def corpus(self) -> Path:
        return CORPUS_DIR / self.name

    @property
    def crashes(self) -> Path:
        return CRASHES_DIR / self.name

    @property
    def dictionary(self) -> Path:
        return DICTS_DIR / f"{self.name}.dict"


def instrument(prefixes: Sequence[str]) -> int:
    """Instrument the functions already imported from modules under `prefixes`.

    atheris.instrument_imports only catches modules imported inside it, but the targets
    import their parsers at the top (so replay needs no fuzzer); instrument_all would also
    instrument requests, urllib3 and the rest, slowing every input for coverage we do not
    want. So: walk the live functions and pick ours, as instrument_all does for all.
    """
    import atheris

    count = 0
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        module = getattr(obj, "__module__", None) or ""
        if module.startswith(NOT_INSTRUMENTED):
            continue
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            atheris.instrument_func(obj)
            count += 1
    return count


def libfuzzer_argv(target: Target, args: Sequence[str]) -> list[str]:
    """The argv libFuzzer sees: our command, our defaults, then the caller's (last flag wins).

    libFuzzer's -merge/-fork re-run argv[0] through `sh -c`, so argv[0] must be a command
    line that starts this target again, not the path of a module file.
    """
    command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "fuzz", target.name))
    defaults = [
        f"-max_len={target.max_len}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={TIMEOUT_S}",
    ]
    if target.dictionary.exists():
        defaults.append(f"-dict={target.dictionary}")
    return [command, *defaults, *args]


def run(target: Target, args: Sequence[str]) -> None:
    """Fuzz `target` under libFuzzer with `args` (flags and corpus directories); never returns."""
    import atheris

    # The children of -merge/-fork run `python3 -m fuzz` from whatever directory we were in.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    for hook in target.hooks:
        atheris.enabled_hooks.add(hook)
    count = instrument(target.instrument)
    print(f"fuzz: {target.name}: instrumented {count} functions", file=sys.stderr)
    argv = libfuzzer_argv(target, args)
    if target.mutator is not None:
        atheris.Setup(argv, target.one_input, custom_mutator=target.mutator)
    else:
        atheris.Setup(argv, target.one_input)
    atheris.Fuzz()

"""`python3 -m fuzz TARGET [libFuzzer flags] [corpus dirs]`; `python3 -m fuzz --list`."""

from __future__ import annotations

import sys

from fuzz import harness, targets


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("usage: python3 -m fuzz TARGET [libFuzzer flags] [corpus dirs]")
        print("targets: " + " ".join(targets.NAMES))
        return 0 if argv else 2
    try:
        target = targets.load(argv[0])
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    harness.run(target, argv[1:])
    return 0  # pragma: no cover - atheris.Fuzz exits the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

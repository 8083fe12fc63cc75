"""Entry point of `cdi-importer` (filled in by the importer issue)."""


def main() -> int:
    raise SystemExit("cdi-importer: not implemented yet")

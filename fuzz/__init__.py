"""Coverage-guided fuzzing of the importer's untrusted-input parsers (atheris + libFuzzer).

Each module here is one target: a pure function of one input that returns when the code
under test answered or refused the input the documented way and raises anything else.
`python3 -m fuzz TARGET [libFuzzer flags] [corpus dirs]` fuzzes one; seeds and the
minimized corpus live in `fuzz/corpus/TARGET/`, inputs that still crash a parser (owned by
someone else) in `fuzz/crashes/TARGET/`. `hack/fuzz` runs longer and merges what it found.
"""

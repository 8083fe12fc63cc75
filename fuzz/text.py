"""Target `text`: the one-line parsers of HTTP headers, ranges, challenges, checksums, refs.

Input: one byte choosing the parser, then its text (UTF-8; invalid bytes become lone
surrogates, which JSON from the API server can also carry). `parse_range` takes the body
size from the text's first line. Invariants, per parser:

- parse_content_range: None or (start, end, total|None) with 0 <= start <= end.
- parse_header_line: (name, value) with no CR/LF/NUL in the value, or ImportFailure.
- content_length: None or an int >= 0. validator_of: None or one of the given values.
- redact_url: a str without the password urlsplit finds, for any text (it builds messages).
- rangeproxy.parse_range: None or 0 <= start <= end < size; ValueError when malformed.
- parse_challenge: (lower-case scheme, str -> str params).
- Checksum.parse: a Checksum that parses back to itself, or ImportFailure.
- parse_reference: a reference, or ImportFailure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from fuzz import harness
from fuzz.harness import require
from importer.checksum import Checksum
from importer.errors import ImportFailure
from importer.sources import httpwire, rangeproxy
from importer.sources.registry import client, reference


def _content_range(text: str) -> None:
    parsed = httpwire.parse_content_range(text)
    if parsed is not None:
        start, end, total = parsed
        require(0 <= start <= end and (total is None or total >= 0), f"range {parsed}")


def _header_line(text: str) -> None:
    try:
        name, value = httpwire.parse_header_line(text)
    except ImportFailure:
        return
    require(bool(name) and not any(c in value for c in "\r\n\0"), f"header {name!r}")


def _headers(text: str) -> dict[str, str]:
    headers = {}
    for line in text.split("\n"):
        name, _, value = line.partition(":")
        headers[name] = value.strip()
    return headers


def _content_length(text: str) -> None:
    n = httpwire.content_length(_headers(text))
    require(n is None or (isinstance(n, int) and n >= 0), f"content length {n!r}")


def _validator(text: str) -> None:
    headers = _headers(text)
    v = httpwire.validator_of(headers)
    require(v is None or v in headers.values(), f"validator {v!r}")


def _redact(text: str) -> None:
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None  # a URL urlsplit refuses: redact_url must still answer
    shown = httpwire.redact_url(text)
    require(isinstance(shown, str), "redact_url gave no str")
    # Its promise covers what a URL parser sees as userinfo; a long password (short ones
    # may also be part of the host or path) must not survive.
    password = parts.password if parts is not None else None
    if password and len(password) >= 8:
        rest = parts.netloc.rpartition("@")[2] + parts.path if parts is not None else ""
        require(password in rest or password not in shown, "password survives redaction")


def _range(text: str) -> None:
    first, _, header = text.partition("\n")
    size = int(first) if first.isascii() and first.isdigit() and len(first) < 20 else 1000
    try:
        parsed = rangeproxy.parse_range(header, size)
    except ValueError:
        return
    if parsed is not None:
        start, end = parsed
        require(0 <= start <= end < size, f"range {parsed} of {size}")


def _challenge(text: str) -> None:
    scheme, params = client.parse_challenge(text)
    require(scheme == scheme.lower(), f"scheme {scheme!r}")
    require(all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()), "params")


def _checksum(text: str) -> None:
    try:
        parsed = Checksum.parse(text)
    except ImportFailure:
        return
    require(Checksum.parse(str(parsed)) == parsed, f"{parsed} does not parse back")


def _reference(text: str) -> None:
    try:
        ref = reference.parse_reference(text)
    except ImportFailure:
        return
    require(isinstance(str(ref), str), "reference without a string form")


PARSERS: tuple[Callable[[str], None], ...] = (
    _content_range,
    _header_line,
    _content_length,
    _validator,
    _redact,
    _range,
    _challenge,
    _checksum,
    _reference,
)


def one_input(data: bytes) -> None:
    if not data:
        return
    PARSERS[data[0] % len(PARSERS)](data[1:].decode("utf-8", "surrogateescape"))


TARGET = harness.Target(
    name="text",
    one_input=one_input,
    instrument=(
        "importer.sources.httpwire",
        "importer.sources.rangeproxy",
        "importer.sources.registry.client",
        "importer.sources.registry.reference",
        "importer.checksum",
        "urllib.parse",
    ),
    max_len=4096,
    hooks=frozenset({"RegEx", "str"}),
)

if __name__ == "__main__":
    harness.run(TARGET, sys.argv[1:])

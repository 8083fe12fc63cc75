"""CORS as CDI's proxy answers it (rs/cors v1.7 `AllowAll()` around every path).

So browser-based uploaders (a web console) can POST to the proxy from another origin:

- a preflight (OPTIONS with Access-Control-Request-Method), on any path, is answered
  200 with an empty body before authentication (preflights carry no credentials):
  `Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers`, and,
  when an Origin is given and the method is one of HEAD GET POST PUT PATCH DELETE,
  `Access-Control-Allow-Origin: *`, `Access-Control-Allow-Methods: <that method>` and
  `Access-Control-Allow-Headers: <the requested headers>`; no Max-Age, no credentials;
- every other response gets `Vary: Origin` and, for an allowed method with an Origin,
  `Access-Control-Allow-Origin: *`.
"""

from __future__ import annotations

from collections.abc import Mapping

ALLOWED_METHODS = frozenset({"HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"})


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and bool(headers.get("Access-Control-Request-Method"))


def _method_allowed(method: str) -> bool:
    method = method.upper()
    return method == "OPTIONS" or method in ALLOWED_METHODS


def requested_headers(value: str) -> list[str]:
    """Access-Control-Request-Headers as rs/cors reads it: names split at spaces and
    commas, only letters, digits, `-` and `_` kept, each word capitalised
    (`x-cdi-thing` -> `X-Cdi-Thing`)."""
    out: list[str] = []
    name: list[str] = []
    upper = True
    for i, ch in enumerate(value):
        if "a" <= ch <= "z":
            name.append(ch.upper() if upper else ch)
        elif "A" <= ch <= "Z":
            name.append(ch if upper else ch.lower())
        elif ch in "-_" or "0" <= ch <= "9":
            name.append(ch)
        if ch in " ," or i == len(value) - 1:
            if name:
                out.append("".join(name))
                name = []
                upper = True
        else:
            upper = ch in "-_"
    return out


def preflight_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers of the answer to a preflight request."""
    out = [("Vary", "Origin"), ("Vary", "Access-Control-Request-Method"),
           ("Vary", "Access-Control-Request-Headers")]
    method = headers.get("Access-Control-Request-Method", "")
    if not headers.get("Origin") or not _method_allowed(method):
        return out
    out += [("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", method.upper())]
    wanted = requested_headers(headers.get("Access-Control-Request-Headers", ""))
    if wanted:
        out.append(("Access-Control-Allow-Headers", ", ".join(wanted)))
    return out


def actual_headers(method: str, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers added to the answer to any other request."""
    out = [("Vary", "Origin")]
    if headers.get("Origin") and _method_allowed(method):
        out.append(("Access-Control-Allow-Origin", "*"))
    return out

"""`Status` objects for failures, worded as the kube-apiserver words them.

Clients (kubectl, client-go in virtctl) show `message` and branch on `reason`/`code`,
so an error from this server reads like one from the kube-apiserver itself.
"""

from __future__ import annotations

from apiserver import group, tokenrequests
from apiserver.obj import Obj

# The kube-apiserver escapes these in messages it renders (responsewriters' sanitizer).
_SANITIZE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason}
    if details is not None:
        out["details"] = details
    out["code"] = code
    return out


def unauthorized() -> Obj:
    return status(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, namespace: str, reason: str = "") -> Obj:
    """What the kube-apiserver answers a denied `create` of this resource in `namespace`."""
    msg = (f"User {_quote(user)} cannot create resource {_quote(group.RESOURCE)} in API "
           f"group {_quote(group.GROUP)} in the namespace {_quote(namespace)}")
    msg = msg.translate(_SANITIZE)
    if reason:
        msg = f"{msg}: {reason}"
    return status(403, "Forbidden", f"{group.RESOURCE}.{group.GROUP} is forbidden: {msg}",
                  {"group": group.GROUP, "kind": group.RESOURCE})


def invalid(name: str, causes: list[tokenrequests.Cause]) -> Obj:
    """422 with one cause per field, as the kube-apiserver reports a failed validation."""
    qualified = f"{group.KIND}.{group.GROUP}"
    text = ", ".join(f"{c.field}: {c.message}" for c in causes)
    details: Obj = {"name": name, "group": group.GROUP, "kind": group.KIND,
                    "causes": [{"reason": c.type.value, "message": c.message,
                                "field": c.field} for c in causes]}
    return status(422, "Invalid", f"{qualified} {_quote(name)} is invalid: {text}", details)


def bad_request(message: str) -> Obj:
    return status(400, "BadRequest", message)


def not_found() -> Obj:
    return status(404, "NotFound", "the server could not find the requested resource",
                  {})


def method_not_allowed() -> Obj:
    return status(405, "MethodNotAllowed",
                  "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str) -> Obj:
    return status(415, "UnsupportedMediaType",
                  f"the body of the request was in an unknown format - accepted media types "
                  f"include: application/json (got {_quote(content_type)})")


def too_large(limit: int) -> Obj:
    return status(413, "RequestEntityTooLarge",
                  f"the request body is larger than {limit} bytes")


def internal_error(message: str) -> Obj:
    return status(500, "InternalError", f"Internal error occurred: {message}")


def _quote(s: str) -> str:
    """Go's %q for the strings that appear here (names, groups, namespaces)."""
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'

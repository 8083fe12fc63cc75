"""The importer's termination report: a small JSON document the kubelet hands to the controller.

The kubelet keeps at most 4096 bytes of a termination message, so `to_json` guarantees
that bound by trimming the free-text message first. Reading one, every known field must
have its type and stay within its bound: a report that does not (a number for a string,
a list for the message, a huge string, an unknown reason) is `MALFORMED_REPORT`, whose
message names the field and quotes nothing of the report, so none of it reaches the
PVC's annotations or the DataVolume's conditions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cdicontract.reasons import Reason

MAX_BYTES = 4096
MAX_FIELD = 256
"""The bound of every string field but the message (formats, checksums, extra values)."""
MAX_EXTRA = 32
_STRINGS = ("format", "compression", "scratch_reason", "checksum")
_COUNTS = ("virtual_size", "bytes_transferred", "bytes_written", "resumes")
_RATES = ("duration_seconds", "throughput_bytes_per_second")
_FLAGS = ("scratch_used", "preallocation_applied")


def _problem(doc: dict[str, Any]) -> str | None:
    """What makes `doc` not a report (a field name and a rule, never a value), or None."""
    reason = doc.get("reason")
    if not isinstance(reason, str) or reason not in Reason.__members__.values():
        return "reason is missing or not a known reason"
    message = doc.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_BYTES:
        return f"message is not a string of at most {MAX_BYTES} characters"
    for name in _STRINGS:
        v = doc.get(name)
        if v is not None and (not isinstance(v, str) or len(v) > MAX_FIELD):
            return f"{name} is not a string of at most {MAX_FIELD} characters"
    for name in _COUNTS:
        v = doc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                              or not 0 <= v < 1 << 63):
            return f"{name} is not a non-negative integer"
    for name in _RATES:
        v = doc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                              or not math.isfinite(v) or v < 0):
            return f"{name} is not a non-negative number"
    for name in _FLAGS:
        v = doc.get(name)
        if v is not None and not isinstance(v, bool):
            return f"{name} is not a boolean"
    extra = doc.get("extra", {})
    if not isinstance(extra, dict) or len(extra) > MAX_EXTRA or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_FIELD
            and len(v) <= MAX_FIELD for k, v in extra.items()):
        return f"extra is not a map of at most {MAX_EXTRA} short strings"
    return None


@dataclass(frozen=True)
class TerminationReport:
    reason: Reason
    message: str = ""
    format: str | None = None
    compression: str | None = None
    virtual_size: int | None = None
    bytes_transferred: int | None = None
    bytes_written: int | None = None
    duration_seconds: float | None = None
    throughput_bytes_per_second: float | None = None
    scratch_used: bool | None = None
    scratch_reason: str | None = None
    resumes: int | None = None
    checksum: str | None = None
    preallocation_applied: bool | None = None
    """True when the whole volume was allocated as asked (PREALLOCATION=true): the
    controller records CDI's `storage.preallocation: "true"` on the PVC."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is Reason.COMPLETED

    def to_json(self) -> str:
        doc = {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}
        doc["reason"] = str(self.reason)
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        if len(text.encode()) <= MAX_BYTES:
            return text
        # Trim the message (the only unbounded field) until the document fits.
        overflow = len(text.encode()) - MAX_BYTES
        msg = self.message.encode()[: max(0, len(self.message.encode()) - overflow - 16)]
        doc["message"] = msg.decode(errors="ignore") + "..."
        doc.pop("extra", None)
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        return text[:MAX_BYTES]

    @classmethod
    def from_json(cls, text: str) -> TerminationReport:
        """Parse a report. Text that is no JSON object becomes an INTERNAL report carrying
        the text (what a client shows its user); an object that breaks a field's rule is
        MALFORMED_REPORT, quoting nothing of it."""
        try:
            doc: Any = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, TypeError, RecursionError):
            return cls(reason=Reason.INTERNAL, message=text[:1024])
        return cls._from_doc(doc)

    @classmethod
    def from_termination_message(cls, text: str) -> TerminationReport:
        """Parse a pod's termination message for the controller: anything that is not a
        well-formed report is MALFORMED_REPORT, quoting nothing of it (the controller
        writes a report's message into annotations and conditions)."""
        try:
            doc: Any = json.loads(text)
        except (ValueError, TypeError, RecursionError):
            return cls(Reason.MALFORMED_REPORT, "termination report is not JSON")
        if not isinstance(doc, dict):
            return cls(Reason.MALFORMED_REPORT, "termination report is not a JSON object")
        return cls._from_doc(doc)

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> TerminationReport:
        problem = _problem(doc)
        if problem is not None:
            return cls(Reason.MALFORMED_REPORT, f"termination report is malformed: {problem}")
        known = {f for f in cls.__dataclass_fields__ if f != "reason"}
        kwargs = {k: v for k, v in doc.items() if k in known}
        return cls(reason=Reason(doc["reason"]), **kwargs)

"""The importer's termination report: a small JSON document the kubelet hands to the controller.

The kubelet keeps at most 4096 bytes of a termination message, so `to_json` guarantees
that bound by trimming the free-text message first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cdicontract.reasons import Reason

MAX_BYTES = 4096


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
        """Parse a report; anything that is not one becomes an INTERNAL report carrying the text."""
        try:
            doc: Any = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            reason = Reason(doc["reason"])
        except (ValueError, KeyError, TypeError):
            return cls(reason=Reason.INTERNAL, message=text[:1024])
        known = {f for f in cls.__dataclass_fields__ if f != "reason"}
        kwargs = {k: v for k, v in doc.items() if k in known}
        return cls(reason=reason, **kwargs)
